package node

import (
	"context"
	"sync"
	"time"

	"tally/fsm"
	"tally/placement"
)

// The write path: where each op goes (its counter's home shard, or one of
// a split counter's sub-counters), grouping by shard, and the retries a
// split in progress asks for.

// outcome is the fate of one op written through writeOps.
type outcome struct {
	res   fsm.Result
	err   error
	split int // the counter's split factor as far as this write learned (1: not split)
}

func (o *outcome) failure() *Error {
	if o.err != nil {
		return clusterError(o.err)
	}
	if o.res.Code != fsm.OK {
		return refusal(o.res)
	}
	return nil
}

func (o *outcome) addResult() AddResult {
	return AddResult{Value: o.res.Value, Exact: o.split <= 1, Split: o.split, ExpiresAt: unixNano(o.res.ExpiresAt)}
}

// splittable reports whether op may go to any sub-counter: a plain add.
// Bounded and expiring adds need the whole value and actor ops the actor
// set, which are all on the home shard.
func splittable(op *fsm.Op) bool {
	return op.Kind == fsm.OpAdd && !op.HasMin && !op.HasMax && op.TTL == 0
}

// place picks the sub-counter op goes to, given the counter is split k
// ways, and returns the op renamed to it and its shard. A keyed add goes
// where its key routes (so a retry lands on the same dedup table); an
// unkeyed one to a sub-counter whose shard this node leads, when there is
// one (no forwarding hop), else to a random one.
func (n *Node) place(op fsm.Op, k int, keys placement.Map) (fsm.Op, uint32) {
	if k <= 1 || !splittable(&op) {
		return op, keys.Home(op.Name)
	}
	var i int
	if op.Key != "" {
		i = fsm.KeyRoute(op.Key, k, keys.Shards)
	} else {
		i = n.localSub(op.Name, k, keys)
	}
	s := keys.SubShard(op.Name, i)
	op.Name = placement.SubName(op.Name, i)
	return op, s
}

// localSub returns the first sub-counter of name (split k ways) whose
// shard this node leads; if it leads none of them, one picked by this
// node's id, so that nodes without a local sub-counter spread over them.
// Either way always the same one while leadership stays: the node's writes
// then share one raft group's entries (group commit), where spreading them
// over several groups would cost an entry, a replication round and fsyncs
// on every replica per group for the same increments.
func (n *Node) localSub(name string, k int, keys placement.Map) int {
	if leading := n.leading.Load(); leading != 0 {
		for i := range k {
			if leading&(1<<keys.SubShard(name, i)) != 0 {
				return i
			}
		}
	}
	return int(n.idHash % uint64(k))
}

// writeOps applies ops wherever their counters (or sub-counters) live and
// returns one outcome per op, in order. Ops on the same shard travel
// together. A keyed write that reaches a split counter's home shard with a
// stale split factor (ErrMoved) is routed again with the factor the answer
// carries.
func (n *Node) writeOps(ctx context.Context, ops []fsm.Op) []outcome {
	keys := n.keys()
	out := make([]outcome, len(ops))
	todo := make([]int, len(ops))
	for i := range todo {
		todo[i] = i
	}
	backoff := 5 * time.Millisecond
	for {
		placed := make([]fsm.Op, len(todo))
		shards := make([]uint32, len(todo))
		used := make([]int, len(todo)) // the factor each op was placed by
		for j, i := range todo {
			used[j] = n.splits.get(ops[i].Name)
			out[i].split = used[j]
			placed[j], shards[j] = n.place(ops[i], used[j], keys)
		}
		n.writePlaced(ctx, placed, shards, func(j int, res fsm.Result, err error) {
			i := todo[j]
			if res.Split > 0 {
				n.splits.learn(ops[i].Name, int(res.Split))
				out[i].split = max(out[i].split, int(res.Split))
			}
			out[i].res, out[i].err = res, err
		})
		// Moved means the home shard's factor is ahead of the one we
		// placed by (the answer taught us the new one: go again at once),
		// or that a split is under way (wait for its end).
		var again []int
		learned := false
		for j, i := range todo {
			if out[i].err == nil && out[i].res.Code == fsm.ErrMoved {
				again = append(again, i)
				learned = learned || n.splits.get(ops[i].Name) > used[j]
			}
		}
		if len(again) == 0 {
			return out
		}
		if !learned {
			select {
			case <-ctx.Done():
			case <-n.stop:
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 100*time.Millisecond)
		}
		if ctx.Err() != nil || n.stopping.Load() {
			for _, i := range again {
				out[i].err = errSplitting
			}
			return out
		}
		todo = again
	}
}

// writePlaced writes placed[j] on shards[j], grouping by shard, and calls
// done(j, ...) for each op (from any goroutine, once per op).
func (n *Node) writePlaced(ctx context.Context, placed []fsm.Op, shards []uint32, done func(j int, res fsm.Result, err error)) {
	if len(placed) == 1 { // the common case, without goroutines or maps
		res, err := n.write(ctx, shards[0], placed)
		if err != nil {
			done(0, fsm.Result{}, err)
		} else {
			done(0, res[0], nil)
		}
		return
	}
	byShard := map[uint32][]int{}
	for j, s := range shards {
		byShard[s] = append(byShard[s], j)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for s, idx := range byShard {
		wg.Add(1)
		go func() {
			defer wg.Done()
			group := make([]fsm.Op, len(idx))
			for g, j := range idx {
				group[g] = placed[j]
			}
			res, err := n.write(ctx, s, group)
			mu.Lock()
			defer mu.Unlock()
			for g, j := range idx {
				if err != nil {
					done(j, fsm.Result{}, err)
				} else {
					done(j, res[g], nil)
				}
			}
		}()
	}
	wg.Wait()
}

package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"tally/forward"
	"tally/fsm"
	"tally/placement"
	"tally/shard"
)

// Split counters on the node side: where a write to a split counter goes,
// how a read sums the sub-counters, and the split protocol (fsm/split.go
// has the state machine's half and the argument for exactness).

// splitCache is what this node knows of counters' split factors. It only
// ever holds factors that were committed (OpSplitEnd applied), and a factor
// never shrinks, so a stale entry is only ever too low: writes then go to
// fewer sub-counters than they could (still counted once), keyed writes get
// ErrMoved from the home shard and are routed again, and reads learn the
// factor from the home shard before summing.
type splitCache struct {
	mu sync.RWMutex
	n  map[string]knownSplit // only factors > 1
}

// knownSplit is a split factor and when this node learned it.
type knownSplit struct {
	N     int       `json:"split"`
	Since time.Time `json:"since"`
}

// maxSplitCache bounds the cache. Forgetting an entry is safe (see above).
const maxSplitCache = 1 << 16

func (c *splitCache) get(name string) int {
	c.mu.RLock()
	k := c.n[name].N
	c.mu.RUnlock()
	return max(k, 1)
}

// learn records that name is split at least k ways.
func (c *splitCache) learn(name string, k int) {
	if k <= 1 {
		return
	}
	c.mu.RLock()
	known := c.n[name].N
	c.mu.RUnlock()
	if known >= k {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]knownSplit{}
	}
	if c.n[name].N >= k {
		return
	}
	if len(c.n) >= maxSplitCache {
		for victim := range c.n {
			delete(c.n, victim)
			break
		}
	}
	c.n[name] = knownSplit{N: k, Since: time.Now()}
}

func (c *splitCache) all() map[string]knownSplit {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]knownSplit, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
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
func (n *Node) place(op fsm.Op, k, S int) (fsm.Op, uint32) {
	if k <= 1 || !splittable(&op) {
		return op, placement.Home(op.Name, S)
	}
	var i int
	if op.Key != "" {
		i = fsm.KeyRoute(op.Key, k, S)
	} else {
		i = n.localSub(op.Name, k, S)
	}
	s := placement.SubShard(op.Name, i, S)
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
func (n *Node) localSub(name string, k, S int) int {
	if leading := n.leading.Load(); leading != 0 {
		home := placement.Home(name, S)
		for i := range k {
			if leading&(1<<((home+uint32(i))%uint32(S))) != 0 {
				return i
			}
		}
	}
	return int(n.idHash % uint64(k))
}

// outcome is the fate of one op written through writeOps.
type outcome struct {
	res   fsm.Result
	err   error
	split int // the counter's split factor as far as this write learned (1: not split)
}

// errSplitting: a keyed write kept being refused because its counter is in
// the middle of a split; nothing was applied.
var errSplitting = errors.New("the counter is being split")

// writeOps applies ops wherever their counters (or sub-counters) live and
// returns one outcome per op, in order. Ops on the same shard travel
// together. A keyed write that reaches a split counter's home shard with a
// stale split factor (ErrMoved) is routed again with the factor the answer
// carries.
func (n *Node) writeOps(ctx context.Context, ops []fsm.Op) []outcome {
	S := n.shardCount()
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
			placed[j], shards[j] = n.place(ops[i], used[j], S)
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

// counterRead is one counter's value as readCounters sums it.
type counterRead struct {
	value     int64
	expiresAt int64 // unsplit counters only
	split     int
	overflow  bool // the sub-counters' sum does not fit an int64
}

// shardsOf lists the shards of a counter's sub-counters.
func shardsOf(name string, k, S int) []uint32 {
	out := make([]uint32, k)
	for i := range out {
		out[i] = placement.SubShard(name, i, S)
	}
	return out
}

// readCounters reads names, summing the sub-counters of split ones: every
// sub-counter this node knows of in parallel with the home shard, whose
// answer has the split factor; sub-counters it did not know of are read
// after. Linearizable reads stay so for counters written with unit (or
// same-signed) increments: each sub-counter is read at a point inside the
// call, so the sum lies between the value when the call began and when it
// ended, and a later read's sum is never smaller.
func (n *Node) readCounters(ctx context.Context, names []string, linear bool) ([]counterRead, error) {
	S := n.shardCount()
	out := make([]counterRead, len(names))
	type sub struct{ name, i int }
	var want []sub
	for ni, name := range names {
		k := n.splits.get(name)
		out[ni].split = k
		for i := range k {
			want = append(want, sub{ni, i})
		}
	}
	for len(want) > 0 {
		byShard := map[uint32][]sub{}
		for _, w := range want {
			s := placement.SubShard(names[w.name], w.i, S)
			byShard[s] = append(byShard[s], w)
		}
		var mu sync.Mutex
		var wg sync.WaitGroup
		var firstErr error
		var next []sub // sub-counters the home shards told us of
		for s, subs := range byShard {
			wg.Add(1)
			go func() {
				defer wg.Done()
				stored := make([]string, len(subs))
				for j, w := range subs {
					stored[j] = placement.SubName(names[w.name], w.i)
				}
				vals, err := n.read(ctx, s, stored, linear)
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					return
				}
				for j, w := range subs {
					r := &out[w.name]
					sum := r.value + vals[j].Value
					if (vals[j].Value > 0 && sum < r.value) || (vals[j].Value < 0 && sum > r.value) {
						r.overflow = true
					}
					r.value = sum
					if w.i == 0 {
						r.expiresAt = vals[j].ExpiresAt
						if vals[j].Split > r.split {
							// Read the sub-counters we did not know of next round.
							for i := r.split; i < vals[j].Split; i++ {
								next = append(next, sub{w.name, i})
							}
							r.split = vals[j].Split
							n.splits.learn(names[w.name], r.split)
						}
					}
				}
			}()
		}
		wg.Wait()
		if firstErr != nil {
			return nil, firstErr
		}
		// Every home shard was read in the first round, so the second
		// round reads only sub-counters and finds nothing new.
		want = next
	}
	return out, nil
}

// splitCounter raises the split factor of name to k (or answers the
// factor it already has if that is k or more), running the protocol on the
// leader of the counter's home shard. It returns the factor and the code of
// a refusal (fsm.ErrSplitShrink, fsm.ErrNotSplittable), or an error.
func (n *Node) splitCounter(ctx context.Context, name string, k int) (int, fsm.Code, error) {
	home := placement.Home(name, n.shardCount())
	var got int
	var code fsm.Code
	err := n.routed(ctx, home, func(sh *shard.Shard, addr string) error {
		var err error
		if sh != nil {
			got, code, err = n.runSplit(ctx, sh, name, k)
		} else {
			var r forward.SplitResponse
			r, err = n.fwd.Split(ctx, addr, forward.SplitRequest{Shard: home, Name: name, Factor: k})
			got, code = r.Factor, r.Code
		}
		return err
	})
	return got, code, err
}

// localSplit serves a forwarded split request (forward_local.go).
func (n *Node) localSplit(ctx context.Context, s uint32, name string, k int) (int, fsm.Code, error) {
	sh := n.shard(s)
	if sh == nil {
		return 0, 0, forward.ErrNoShard
	}
	if placement.Home(name, n.shardCount()) != s {
		return 0, 0, fmt.Errorf("counter %q does not live on shard %d", name, s)
	}
	return n.runSplit(ctx, sh, name, k)
}

// runSplit runs the split protocol on sh, the counter's home shard, which
// this node leads (else the begin fails with NotLeader and routed retries
// elsewhere): begin, import the moved keys, end.
func (n *Node) runSplit(ctx context.Context, sh *shard.Shard, name string, k int) (int, fsm.Code, error) {
	unlock := n.lockSplit(name)
	defer unlock()
	S := n.shardCount()
	res, err := sh.Propose(ctx, []fsm.Op{{Kind: fsm.OpSplitBegin, Name: name, Delta: int64(k), Max: int64(S), HasMax: true}})
	if err != nil {
		return 0, 0, err
	}
	if res[0].Code != fsm.OK || int(res[0].Split) >= k {
		return int(res[0].Split), res[0].Code, nil
	}
	got, err := n.finishSplit(ctx, sh, name, k)
	return got, fsm.OK, err
}

// lockSplit serializes this node's runs of the protocol for one counter
// (a manual split, the auto-splitter and the finisher may race). Runs on
// different nodes need no lock: every step is idempotent.
func (n *Node) lockSplit(name string) func() {
	n.splitMu.Lock()
	if n.splitLocks == nil {
		n.splitLocks = map[string]chan struct{}{}
	}
	for {
		ch, busy := n.splitLocks[name]
		if !busy {
			break
		}
		n.splitMu.Unlock()
		<-ch
		n.splitMu.Lock()
	}
	ch := make(chan struct{})
	n.splitLocks[name] = ch
	n.splitMu.Unlock()
	return func() {
		n.splitMu.Lock()
		delete(n.splitLocks, name)
		n.splitMu.Unlock()
		close(ch)
	}
}

// finishSplit does the rest of a split whose begin this replica has
// applied: the moved keys' records go to their new sub-counters' shards,
// then the end makes k the factor routers use.
func (n *Node) finishSplit(ctx context.Context, sh *shard.Shard, name string, k int) (int, error) {
	S := n.shardCount()
	moved := sh.MovedKeys(name)
	byShard := map[uint32][]fsm.Op{}
	for _, op := range moved {
		s := placement.Of(op.Name, S)
		byShard[s] = append(byShard[s], op)
	}
	for s, ops := range byShard {
		for len(ops) > 0 {
			chunk := ops[:min(len(ops), maxBatchOps)]
			ops = ops[len(chunk):]
			if _, err := n.write(ctx, s, chunk); err != nil {
				return 0, fmt.Errorf("moving idempotency keys of %q to shard %d: %w", name, s, err)
			}
		}
	}
	res, err := sh.Propose(ctx, []fsm.Op{{Kind: fsm.OpSplitEnd, Name: name, Delta: int64(k)}})
	if err != nil {
		return 0, err
	}
	if res[0].Code != fsm.OK {
		return 0, fmt.Errorf("ending the split of %q: %s", name, res[0].Code)
	}
	got := int(res[0].Split)
	n.splits.learn(name, got)
	n.log.Info("counter split", "counter", name, "split", got, "moved_keys", len(moved))
	return got, nil
}

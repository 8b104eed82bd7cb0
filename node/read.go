package node

import (
	"context"
	"sync"

	"tally/placement"
	"tally/shard"
)

// counterRead is one counter's value as readCounters sums it.
type counterRead struct {
	value     int64
	expiresAt int64 // unsplit counters only
	split     int
	overflow  bool // the sub-counters' sum does not fit an int64
	// index is, with readCountersAt, the raft index the value reflects:
	// the home shard's for an unsplit counter, the sum over the shards
	// read for a split one. Either only grows from one read to the next.
	index uint64
}

// readCounters reads names, summing the sub-counters of split ones: every
// sub-counter this node knows of in parallel with the home shard, whose
// answer has the split factor; sub-counters it did not know of are read
// after. Linearizable reads stay so for counters written with unit (or
// same-signed) increments: each sub-counter is read at a point inside the
// call, so the sum lies between the value when the call began and when it
// ended, and a later read's sum is never smaller.
func (n *Node) readCounters(ctx context.Context, names []string, linear bool) ([]counterRead, error) {
	return n.readCountersAt(ctx, names, linear, false)
}

// readCountersAt is readCounters that, when withIndex, also reports the
// index each value reflects (see counterRead.index).
func (n *Node) readCountersAt(ctx context.Context, names []string, linear, withIndex bool) ([]counterRead, error) {
	keys := n.keys()
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
			s := keys.SubShard(names[w.name], w.i)
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
				var vals []shard.Lookup
				var idx uint64
				var err error
				if withIndex {
					vals, idx, err = n.readAt(ctx, s, stored, linear)
				} else {
					vals, err = n.read(ctx, s, stored, linear)
				}
				mu.Lock()
				defer mu.Unlock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					return
				}
				var counted map[int]bool // each name counts this shard's index once
				if withIndex {
					counted = map[int]bool{}
				}
				for j, w := range subs {
					r := &out[w.name]
					if withIndex && !counted[w.name] {
						r.index += idx
						counted[w.name] = true
					}
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

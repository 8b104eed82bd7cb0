package node

import (
	"context"
	"fmt"
	"sync"
	"time"

	"tally/forward"
	"tally/fsm"
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
	n  map[string]KnownSplit // only factors > 1
}

// KnownSplit is a split factor and when this node learned it.
type KnownSplit struct {
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
		c.n = map[string]KnownSplit{}
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
	c.n[name] = KnownSplit{N: k, Since: time.Now()}
}

func (c *splitCache) all() map[string]KnownSplit {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make(map[string]KnownSplit, len(c.n))
	for k, v := range c.n {
		out[k] = v
	}
	return out
}

// splitCounter raises the split factor of name to k (or answers the
// factor it already has if that is k or more), running the protocol on the
// leader of the counter's home shard. It returns the factor and the code of
// a refusal (fsm.ErrSplitShrink, fsm.ErrNotSplittable), or an error.
func (n *Node) splitCounter(ctx context.Context, name string, k int) (int, fsm.Code, error) {
	home := n.keys().Home(name)
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
	if n.keys().Home(name) != s {
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
	res, err := sh.Propose(ctx, []fsm.Op{fsm.SplitBegin(name, k, S)})
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
	keys := n.keys()
	moved := sh.MovedKeys(name)
	byShard := map[uint32][]fsm.Op{}
	for _, op := range moved {
		s := keys.Of(op.Name)
		byShard[s] = append(byShard[s], op)
	}
	for s, ops := range byShard {
		for len(ops) > 0 {
			chunk := ops[:min(len(ops), MaxBatchOps)]
			ops = ops[len(chunk):]
			if _, err := n.write(ctx, s, chunk); err != nil {
				return 0, fmt.Errorf("moving idempotency keys of %q to shard %d: %w", name, s, err)
			}
		}
	}
	res, err := sh.Propose(ctx, []fsm.Op{fsm.SplitEnd(name, k)})
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

package node

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"tally/forward"
	"tally/fsm"
	"tally/placement"
	"tally/shard"
)

// Routing: which node leads a shard, running an operation there (on a
// local replica, or forwarded), and serving what other nodes forward here.

func (n *Node) shard(s uint32) *shard.Shard {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.shards[s]
}

func (n *Node) shardCount() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.nshards
}

// keys is the cluster's key placement: which shard each counter lives on.
func (n *Node) keys() placement.Map {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return placement.Map{Scheme: n.scheme, Shards: n.nshards}
}

// hostedShards returns the local replicas, by shard id.
func (n *Node) hostedShards() []*shard.Shard {
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]*shard.Shard, 0, len(n.shards))
	for _, s := range n.shards {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out
}

// leaderOf returns who leads shard s as far as this node knows: its own
// replica's view first (raft's own knowledge is the freshest), gossip
// otherwise.
func (n *Node) leaderOf(s uint32) (id, addr string) {
	if sh := n.shard(s); sh != nil {
		if sh.IsLeader() {
			return n.cfg.ID, n.mux.Addr()
		}
		if id, addr := sh.Leader(); id != "" {
			return id, addr
		}
	}
	id, addr, _ = n.ms.leaderOf(s)
	return id, addr
}

// localWrite, localRead, localMember and localSplit serve forwarded
// requests (forward_local.go).
func (n *Node) localWrite(ctx context.Context, s uint32, ops []fsm.Op) ([]fsm.Result, error) {
	sh := n.shard(s)
	if sh == nil {
		return nil, forward.ErrNoShard
	}
	// A sender that placed a counter on the wrong shard (it disagrees on
	// the shard count) must not write it where no reader looks.
	keys := n.keys()
	for i := range ops {
		if keys.Of(ops[i].Name) != s {
			return nil, fmt.Errorf("counter %q does not live on shard %d of %d", ops[i].Name, s, keys.Shards)
		}
	}
	n.metrics.forwardedIn.Inc()
	return n.propose(ctx, sh, ops)
}

// propose proposes ops on a local replica (which must lead its shard to
// succeed), counting the writes of counters on their home shard for the
// auto-splitter.
func (n *Node) propose(ctx context.Context, sh *shard.Shard, ops []fsm.Op) ([]fsm.Result, error) {
	if n.tracker != nil && sh.IsLeader() {
		for i := range ops {
			op := &ops[i]
			if op.Kind != fsm.OpAdd {
				continue
			}
			if name, sub := placement.ParseSubName(op.Name); sub == 0 && name == op.Name {
				if splittable(op) {
					n.tracker.Observe(op.Name, 1)
				} else {
					n.tracker.Exclude(op.Name) // bounds and expiry need an unsplit counter
				}
			}
		}
	}
	return sh.Propose(ctx, ops)
}

func (n *Node) localRead(ctx context.Context, s uint32, names []string, linear bool) ([]shard.Lookup, error) {
	sh := n.shard(s)
	if sh == nil {
		return nil, forward.ErrNoShard
	}
	return sh.Lookup(ctx, names, linear)
}

func (n *Node) localReadAt(ctx context.Context, s uint32, names []string, linear bool) ([]shard.Lookup, uint64, error) {
	sh := n.shard(s)
	if sh == nil {
		return nil, 0, forward.ErrNoShard
	}
	return sh.LookupAt(ctx, names, linear)
}

func (n *Node) localMember(ctx context.Context, s uint32, name, actor string, linear bool) (bool, error) {
	sh := n.shard(s)
	if sh == nil {
		return false, forward.ErrNoShard
	}
	return sh.IsMember(ctx, name, actor, linear)
}

// write applies ops on shard s wherever its leader is, retrying while the
// route is stale or no leader is known. It retries only failures that
// guarantee nothing happened; an ambiguous one is returned as
// shard.ErrOutcomeUnknown.
func (n *Node) write(ctx context.Context, s uint32, ops []fsm.Op) ([]fsm.Result, error) {
	var res []fsm.Result
	err := n.routed(ctx, s, func(sh *shard.Shard, addr string) error {
		var err error
		if sh != nil {
			res, err = n.propose(ctx, sh, ops)
		} else {
			n.metrics.forwardedOut.Inc()
			var r forward.WriteResponse
			r, err = n.fwd.Write(ctx, addr, forward.WriteRequest{Shard: s, Ops: ops})
			res = r.Results
		}
		return err
	})
	return res, err
}

// read returns the values of names on shard s. A stale read is served by
// a local replica when there is one.
func (n *Node) read(ctx context.Context, s uint32, names []string, linear bool) ([]shard.Lookup, error) {
	if !linear {
		if sh := n.shard(s); sh != nil {
			return sh.Lookup(ctx, names, false)
		}
	}
	var vals []shard.Lookup
	err := n.routed(ctx, s, func(sh *shard.Shard, addr string) error {
		var err error
		if sh != nil {
			vals, err = sh.Lookup(ctx, names, linear)
		} else {
			var r forward.ReadResponse
			r, err = n.fwd.Read(ctx, addr, forward.ReadRequest{Shard: s, Names: names, Linearizable: linear})
			vals = r.Values
		}
		return err
	})
	return vals, err
}

// readAt is read with the raft index of the replica state it reflects.
func (n *Node) readAt(ctx context.Context, s uint32, names []string, linear bool) ([]shard.Lookup, uint64, error) {
	if !linear {
		if sh := n.shard(s); sh != nil {
			return sh.LookupAt(ctx, names, false)
		}
	}
	var vals []shard.Lookup
	var idx uint64
	err := n.routed(ctx, s, func(sh *shard.Shard, addr string) error {
		var err error
		if sh != nil {
			vals, idx, err = sh.LookupAt(ctx, names, linear)
		} else {
			var r forward.ReadAtResponse
			r, err = n.fwd.ReadAt(ctx, addr, forward.ReadAtRequest{Shard: s, Names: names, Linearizable: linear})
			vals, idx = r.Values, r.Index
		}
		return err
	})
	return vals, idx, err
}

// member reports whether actor is in the actor set of name (on shard s).
func (n *Node) member(ctx context.Context, s uint32, name, actor string, linear bool) (bool, error) {
	if !linear {
		if sh := n.shard(s); sh != nil {
			return sh.IsMember(ctx, name, actor, false)
		}
	}
	var ok bool
	err := n.routed(ctx, s, func(sh *shard.Shard, addr string) error {
		var err error
		if sh != nil {
			ok, err = sh.IsMember(ctx, name, actor, linear)
		} else {
			var r forward.MemberResponse
			r, err = n.fwd.Member(ctx, addr, forward.MemberRequest{Shard: s, Name: name, Actor: actor, Linearizable: linear})
			ok = r.Member
		}
		return err
	})
	return ok, err
}

// routed runs op against the leader of shard s (sh set when that is this
// node, addr otherwise) and retries with backoff on the errors that mean
// "not done, ask elsewhere": not the leader, no leader yet, not sent.
func (n *Node) routed(ctx context.Context, s uint32, op func(sh *shard.Shard, addr string) error) error {
	backoff := 10 * time.Millisecond
	var hint string // leader address suggested by the last NotLeader answer
	var lastErr error = errNoLeader
	for attempt := 0; attempt < 30; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return lastErr
			case <-n.stop:
				return shard.ErrClosed
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 200*time.Millisecond)
		}
		addr := hint
		hint = ""
		if addr == "" {
			_, addr = n.leaderOf(s)
		}
		if addr == "" {
			lastErr = errNoLeader
			continue
		}
		var sh *shard.Shard
		if addr == n.mux.Addr() {
			sh = n.shard(s)
			if sh == nil {
				lastErr = errNoLeader
				continue
			}
		}
		err := op(sh, addr)
		if nl, ok := shard.IsNotLeader(err); ok {
			if nl.LeaderAddr != addr {
				hint = nl.LeaderAddr
			}
			lastErr = errNoLeader
			continue
		}
		if errors.Is(err, forward.ErrNotSent) || errors.Is(err, forward.ErrNoShard) {
			lastErr = shard.ErrUnavailable
			continue
		}
		return err
	}
	return lastErr
}

package node

import (
	"context"
	"time"

	"tally/forward"
	"tally/fsm"
	"tally/placement"
	"tally/shard"
)

// Whole-counter operations: delete, set, expire, and actor sets taken as
// sets (several members in one entry, the set's size), what Redis's DEL,
// SET, EXPIRE and SADD/SREM/SCARD map onto.

// MaxActorsPerOp bounds the actors of one Actors call: they travel in one
// raft entry.
const MaxActorsPerOp = MaxBatchOps

// Delete removes a counter: its value, expiry and actor set, and every
// sub-counter of a split counter. It reports whether anything was there.
// A split counter keeps its split factor (a factor only grows) and reads 0;
// increments racing the delete on a sub-counter are kept, not lost in a
// sub-counter nobody sums.
func (n *Node) Delete(ctx context.Context, name string) (bool, error) {
	if err := n.checkFormed(); err != nil {
		return false, err
	}
	if bad := ValidName(name); bad != "" {
		return false, badInput(CodeBadName, "%s", bad)
	}
	ctx, cancel := n.requestContext(ctx, 2)
	defer cancel()
	keys := n.keys()
	// The home shard knows the split factor; a linearizable read learns it,
	// so no sub-counter a split made before this call is left behind.
	vals, err := n.read(ctx, keys.Home(name), []string{name}, true)
	if err != nil {
		return false, clusterError(err)
	}
	k := max(vals[0].Split, n.splits.get(name), 1)
	n.splits.learn(name, k)
	ops := make([]fsm.Op, k)
	shards := make([]uint32, k)
	for i := range k {
		ops[i] = fsm.Op{Kind: fsm.OpDelete, Name: placement.SubName(name, i)}
		shards[i] = keys.SubShard(name, i)
	}
	existed := false
	var firstErr error
	n.writePlaced(ctx, ops, shards, func(_ int, res fsm.Result, err error) {
		switch {
		case err != nil:
			if firstErr == nil {
				firstErr = err
			}
		case res.Code != fsm.OK:
			if firstErr == nil {
				firstErr = refusal(res)
			}
		default:
			existed = existed || res.Changed
		}
	})
	if firstErr != nil {
		return false, clusterError(firstErr)
	}
	return existed, nil
}

// errSplitWhole refuses a set or expiry on a split counter.
var errSplitWhole = &Error{Code: CodeCounterSplit, Message: "the counter is split across shards: SET and EXPIRE need an unsplit counter; nothing changed"}

// validTTL checks a ttl the way AddRequest does; zero says "none" only
// where allowZero.
func validTTL(ttl time.Duration, allowZero bool) *Error {
	if (ttl == 0 && !allowZero) || ttl < 0 || ttl > time.Duration(fsm.MaxTTL)*time.Millisecond || ttl%time.Millisecond != 0 {
		return badInput(CodeBadTTL, "a ttl must be between 1 ms and ten years, in whole milliseconds")
	}
	return nil
}

// Set makes value the counter's value (an import), clearing its actor set;
// with ttl > 0 the counter expires that long after the leader applied it,
// otherwise never (any expiry it had is gone). A split counter is refused
// with CodeCounterSplit.
func (n *Node) Set(ctx context.Context, name string, value int64, ttl time.Duration) error {
	if err := n.checkFormed(); err != nil {
		return err
	}
	if bad := ValidName(name); bad != "" {
		return badInput(CodeBadName, "%s", bad)
	}
	if bad := validTTL(ttl, true); bad != nil {
		return bad
	}
	_, err := n.wholeOp(ctx, fsm.Op{Kind: fsm.OpSet, Name: name, Delta: value, TTL: ttl.Milliseconds()})
	return err
}

// Expire makes an existing counter expire ttl (1 ms to ten years) after
// the leader applies it, and reports whether there was such a counter (a
// missing one is left missing). A split counter is refused with
// CodeCounterSplit.
func (n *Node) Expire(ctx context.Context, name string, ttl time.Duration) (bool, error) {
	if err := n.checkFormed(); err != nil {
		return false, err
	}
	if bad := ValidName(name); bad != "" {
		return false, badInput(CodeBadName, "%s", bad)
	}
	if bad := validTTL(ttl, false); bad != nil {
		return false, bad
	}
	res, err := n.wholeOp(ctx, fsm.Op{Kind: fsm.OpExpire, Name: name, TTL: ttl.Milliseconds()})
	return res.Changed, err
}

// wholeOp writes one set or expire op on the counter's home shard.
func (n *Node) wholeOp(ctx context.Context, op fsm.Op) (fsm.Result, error) {
	ctx, cancel := n.requestContext(ctx, 1)
	defer cancel()
	o := n.writeOps(ctx, []fsm.Op{op})[0]
	if o.err == nil && o.res.Code == fsm.ErrSplit {
		return fsm.Result{}, errSplitWhole
	}
	if e := o.failure(); e != nil {
		return fsm.Result{}, e
	}
	return o.res, nil
}

// Actors adds actors to (add) or removes them from the counter's actor
// set in one raft entry, counting each change once, and answers how many
// memberships changed and the counter's value after them.
func (n *Node) Actors(ctx context.Context, name string, actors []string, add bool) (int, int64, error) {
	if err := n.checkFormed(); err != nil {
		return 0, 0, err
	}
	if bad := ValidName(name); bad != "" {
		return 0, 0, badInput(CodeBadName, "%s", bad)
	}
	if len(actors) == 0 || len(actors) > MaxActorsPerOp {
		return 0, 0, badInput(CodeTooManyOps, "give 1 to %d actors", MaxActorsPerOp)
	}
	kind := fsm.OpActorRemove
	if add {
		kind = fsm.OpActorAdd
	}
	ops := make([]fsm.Op, len(actors))
	for i, a := range actors {
		if bad := ValidActor(a); bad != "" {
			return 0, 0, badInput(CodeBadActor, "%s", bad)
		}
		ops[i] = fsm.Op{Kind: kind, Name: name, Actor: a}
	}
	ctx, cancel := n.requestContext(ctx, 1)
	defer cancel()
	// Actor ops all go to the home shard, where the set is: writeOps sends
	// them there as one group, so one entry.
	changed, value := 0, int64(0)
	for _, o := range n.writeOps(ctx, ops) {
		if e := o.failure(); e != nil {
			return 0, 0, e
		}
		if o.res.Changed {
			changed++
		}
		value = o.res.Value
	}
	return changed, value, nil
}

// ActorCount returns the size of the counter's actor set.
func (n *Node) ActorCount(ctx context.Context, name string, c Consistency) (int, error) {
	if err := n.checkFormed(); err != nil {
		return 0, err
	}
	if bad := ValidName(name); bad != "" {
		return 0, badInput(CodeBadName, "%s", bad)
	}
	ctx, cancel := n.requestContext(ctx, 1)
	defer cancel()
	k, err := n.card(ctx, n.keys().Home(name), name, c == Linearizable)
	if err != nil {
		return 0, clusterError(err)
	}
	return k, nil
}

func (n *Node) localCard(ctx context.Context, s uint32, name string, linear bool) (int, error) {
	sh := n.shard(s)
	if sh == nil {
		return 0, forward.ErrNoShard
	}
	return sh.ActorCount(ctx, name, linear)
}

// card returns the size of the actor set of name (on shard s).
func (n *Node) card(ctx context.Context, s uint32, name string, linear bool) (int, error) {
	if !linear {
		if sh := n.shard(s); sh != nil {
			return sh.ActorCount(ctx, name, false)
		}
	}
	var k int
	err := n.routed(ctx, s, func(sh *shard.Shard, addr string) error {
		var err error
		if sh != nil {
			k, err = sh.ActorCount(ctx, name, linear)
		} else {
			var r forward.CardResponse
			r, err = n.fwd.Card(ctx, addr, forward.CardRequest{Shard: s, Name: name, Linearizable: linear})
			k = r.Actors
		}
		return err
	})
	return k, err
}

package node

import (
	"context"
	"fmt"
	"time"

	"tally/fsm"
)

// The core's operations: what every protocol adapter (httpapi, the RESP
// listener) calls. Each validates its request, runs on the shards the
// counter lives on wherever their leaders are, bounds itself by the
// configured request timeout, and fails with an *Error.

// Limits of the multi-counter operations.
const (
	MaxReadMany = 1000 // names per ReadMany
	MaxBatchOps = 1000 // requests per AddBatch
)

// Consistency is how fresh a read must be.
type Consistency uint8

const (
	// Linearizable reads see every write acknowledged before they began
	// (the shard leader confirms its leadership first).
	Linearizable Consistency = iota
	// Stale reads answer from this node's own replica when it has one.
	Stale
)

// AddRequest adds Delta (negative to subtract) to the counter Name.
type AddRequest struct {
	Name  string
	Delta int64
	// The add applies only if the result v satisfies (!HasMin || v >= Min)
	// && (!HasMax || v <= Max); otherwise it fails with CodeOutOfBounds.
	Min, Max       int64
	HasMin, HasMax bool
	// TTL, when not 0, makes a counter the add creates expire that long
	// after the leader applied it: 1 ms to ten years, whole milliseconds.
	TTL time.Duration
	// IdempotencyKey, when set, makes a retry return the first result
	// instead of adding again.
	IdempotencyKey string
}

// AddResult is an applied add's answer.
type AddResult struct {
	// Value is the counter's value after the add; for a split counter the
	// value of the sub-counter it landed on (a lower bound of the total
	// while the counter only grows), and Exact is false.
	Value     int64
	Exact     bool
	Split     int       // the split factor as far as this write learned
	ExpiresAt time.Time // zero: the counter does not expire
}

// AddOutcome is one request's fate in AddBatch: Err nil and Result, or Err.
type AddOutcome struct {
	Result AddResult
	Err    *Error
}

// ActorRequest likes (adds Actor to the actor set of Name, counting it
// once) or unlikes.
type ActorRequest struct {
	Name, Actor    string
	IdempotencyKey string
}

// ActorResult is the counter's value after a like or unlike, and whether
// the actor's membership changed.
type ActorResult struct {
	Value   int64
	Changed bool
}

// ReadRequest reads one counter.
type ReadRequest struct {
	Name        string
	Consistency Consistency
}

// ReadResult is a counter's value (0 for an unknown counter): the sum of
// its sub-counters when it is split.
type ReadResult struct {
	Name      string
	Value     int64
	Split     int
	Shards    []uint32  // the shards of its sub-counters, home first
	ExpiresAt time.Time // zero: no expiry (split counters never expire)
}

// MemberRequest asks whether Actor is in the actor set of Name.
type MemberRequest struct {
	Name, Actor string
	Consistency Consistency
}

// SplitRequest raises the split factor of Name to Factor (1..shards);
// Factor 1 asks for no split, which fails with CodeSplitShrink if there is one.
type SplitRequest struct {
	Name   string
	Factor int
}

// SplitResult is the counter's split factor after a split.
type SplitResult struct {
	Name   string
	Factor int
}

func (n *Node) checkFormed() error {
	if !n.formed.Load() {
		return errNotFormed
	}
	return nil
}

// op turns req into the fsm op it proposes, or says what is wrong with it.
func (req *AddRequest) op() (fsm.Op, *Error) {
	if bad := ValidName(req.Name); bad != "" {
		return fsm.Op{}, badInput(CodeBadName, "%s", bad)
	}
	if req.IdempotencyKey != "" && !ValidKey(req.IdempotencyKey) {
		return fsm.Op{}, badInput(CodeBadKey, "an idempotency key must be 1–256 printable ASCII characters")
	}
	if req.HasMin && req.HasMax && req.Min > req.Max {
		return fsm.Op{}, badInput(CodeBadBounds, "min must not be greater than max")
	}
	if req.TTL < 0 || req.TTL > time.Duration(fsm.MaxTTL)*time.Millisecond || req.TTL%time.Millisecond != 0 {
		return fsm.Op{}, badInput(CodeBadTTL, "a ttl must be between 1 ms and ten years, in whole milliseconds")
	}
	op := fsm.Op{Kind: fsm.OpAdd, Name: req.Name, Delta: req.Delta, Key: req.IdempotencyKey,
		HasMin: req.HasMin, HasMax: req.HasMax, TTL: req.TTL.Milliseconds()}
	if req.HasMin {
		op.Min = req.Min
	}
	if req.HasMax {
		op.Max = req.Max
	}
	return op, nil
}

func (req *ActorRequest) op(kind fsm.OpKind) (fsm.Op, *Error) {
	if bad := ValidName(req.Name); bad != "" {
		return fsm.Op{}, badInput(CodeBadName, "%s", bad)
	}
	if bad := ValidActor(req.Actor); bad != "" {
		return fsm.Op{}, badInput(CodeBadActor, "%s", bad)
	}
	if req.IdempotencyKey != "" && !ValidKey(req.IdempotencyKey) {
		return fsm.Op{}, badInput(CodeBadKey, "an idempotency key must be 1–256 printable ASCII characters")
	}
	return fsm.Op{Kind: kind, Name: req.Name, Actor: req.Actor, Key: req.IdempotencyKey}, nil
}

// requestContext bounds one operation by the configured request timeout
// (times scale, for the operations that run several rounds).
func (n *Node) requestContext(ctx context.Context, scale int) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Duration(scale)*n.cfg.RequestTimeout)
}

// Add applies one add on its counter's shard (or, for a split counter, a
// sub-counter's).
func (n *Node) Add(ctx context.Context, req AddRequest) (AddResult, error) {
	if err := n.checkFormed(); err != nil {
		return AddResult{}, err
	}
	op, bad := req.op()
	if bad != nil {
		return AddResult{}, bad
	}
	ctx, cancel := n.requestContext(ctx, 1)
	defer cancel()
	o := n.writeOps(ctx, []fsm.Op{op})[0]
	if e := o.failure(); e != nil {
		return AddResult{}, e
	}
	return o.addResult(), nil
}

// AddBatch applies many adds at once, and answers one outcome per request,
// in order. The adds of one shard travel together in one raft entry. An
// invalid request fails the whole batch before anything applies.
func (n *Node) AddBatch(ctx context.Context, reqs []AddRequest) ([]AddOutcome, error) {
	if err := n.checkFormed(); err != nil {
		return nil, err
	}
	if len(reqs) > MaxBatchOps {
		return nil, badInput(CodeTooManyOps, "at most %d ops per batch, got %d", MaxBatchOps, len(reqs))
	}
	ops := make([]fsm.Op, len(reqs))
	for i := range reqs {
		op, bad := reqs[i].op()
		if bad != nil {
			bad.Message = fmt.Sprintf("op %d: %s", i, bad.Message)
			return nil, bad
		}
		ops[i] = op
	}
	ctx, cancel := n.requestContext(ctx, 1)
	defer cancel()
	out := make([]AddOutcome, len(ops))
	for i, o := range n.writeOps(ctx, ops) {
		if e := o.failure(); e != nil {
			out[i].Err = e
		} else {
			out[i].Result = o.addResult()
		}
	}
	return out, nil
}

// Like adds an actor to a counter's actor set; the counter grows by one
// only if the actor was not a member.
func (n *Node) Like(ctx context.Context, req ActorRequest) (ActorResult, error) {
	return n.actorOp(ctx, req, fsm.OpActorAdd)
}

// Unlike removes an actor; the counter shrinks by one only if it was a
// member.
func (n *Node) Unlike(ctx context.Context, req ActorRequest) (ActorResult, error) {
	return n.actorOp(ctx, req, fsm.OpActorRemove)
}

func (n *Node) actorOp(ctx context.Context, req ActorRequest, kind fsm.OpKind) (ActorResult, error) {
	if err := n.checkFormed(); err != nil {
		return ActorResult{}, err
	}
	op, bad := req.op(kind)
	if bad != nil {
		return ActorResult{}, bad
	}
	ctx, cancel := n.requestContext(ctx, 1)
	defer cancel()
	o := n.writeOps(ctx, []fsm.Op{op})[0]
	if e := o.failure(); e != nil {
		return ActorResult{}, e
	}
	return ActorResult{Value: o.res.Value, Changed: o.res.Changed}, nil
}

// IsMember reports whether an actor is in a counter's actor set.
func (n *Node) IsMember(ctx context.Context, req MemberRequest) (bool, error) {
	if err := n.checkFormed(); err != nil {
		return false, err
	}
	if bad := ValidName(req.Name); bad != "" {
		return false, badInput(CodeBadName, "%s", bad)
	}
	if bad := ValidActor(req.Actor); bad != "" {
		return false, badInput(CodeBadActor, "%s", bad)
	}
	ctx, cancel := n.requestContext(ctx, 1)
	defer cancel()
	ok, err := n.member(ctx, n.keys().Home(req.Name), req.Name, req.Actor, req.Consistency == Linearizable)
	if err != nil {
		return false, clusterError(err)
	}
	return ok, nil
}

// Read returns one counter's value, summing its sub-counters if it is split.
func (n *Node) Read(ctx context.Context, req ReadRequest) (ReadResult, error) {
	if err := n.checkFormed(); err != nil {
		return ReadResult{}, err
	}
	if bad := ValidName(req.Name); bad != "" {
		return ReadResult{}, badInput(CodeBadName, "%s", bad)
	}
	ctx, cancel := n.requestContext(ctx, 1)
	defer cancel()
	vals, err := n.readCounters(ctx, []string{req.Name}, req.Consistency == Linearizable)
	if err != nil {
		return ReadResult{}, clusterError(err)
	}
	if vals[0].overflow {
		return ReadResult{}, &Error{Code: CodeOverflow, Message: "the sum of the counter's sub-counters does not fit in an int64"}
	}
	return n.readResult(req.Name, vals[0]), nil
}

// ReadMany returns the values of up to MaxReadMany counters, in order:
// one read per shard, every shard in parallel.
func (n *Node) ReadMany(ctx context.Context, names []string, c Consistency) ([]ReadResult, error) {
	if err := n.checkFormed(); err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, badInput(CodeBadName, "give at least one counter name")
	}
	if len(names) > MaxReadMany {
		return nil, badInput(CodeTooManyNames, "at most %d names per request", MaxReadMany)
	}
	for _, name := range names {
		if bad := ValidName(name); bad != "" {
			return nil, badInput(CodeBadName, "%s: %q", bad, name)
		}
	}
	ctx, cancel := n.requestContext(ctx, 1)
	defer cancel()
	vals, err := n.readCounters(ctx, names, c == Linearizable)
	if err != nil {
		return nil, clusterError(err)
	}
	out := make([]ReadResult, len(names))
	for i, v := range vals {
		if v.overflow {
			return nil, &Error{Code: CodeOverflow, Message: fmt.Sprintf("the sum of the sub-counters of %q does not fit in an int64", names[i])}
		}
		out[i] = n.readResult(names[i], v)
	}
	return out, nil
}

func (n *Node) readResult(name string, v counterRead) ReadResult {
	return ReadResult{Name: name, Value: v.value, Split: v.split,
		Shards: n.keys().SubShards(name, v.split), ExpiresAt: unixNano(v.expiresAt)}
}

// unixNano converts an fsm expiry (Unix nanoseconds, 0 = none).
func unixNano(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// Split raises a counter's split factor, running the split protocol on the
// leader of its home shard. It fails with CodeSplitShrink (with the
// current factor) if the counter is split further already, and
// CodeNotSplittable for a counter with an expiry.
func (n *Node) Split(ctx context.Context, req SplitRequest) (SplitResult, error) {
	if err := n.checkFormed(); err != nil {
		return SplitResult{}, err
	}
	if bad := ValidName(req.Name); bad != "" {
		return SplitResult{}, badInput(CodeBadName, "%s", bad)
	}
	S := n.shardCount()
	k := req.Factor
	if k < 1 || k > S {
		return SplitResult{}, badInput(CodeBadSplit, "the split factor must be 1..%d (the shard count)", S)
	}
	ctx, cancel := n.requestContext(ctx, 2)
	defer cancel()
	from := n.splits.get(req.Name)
	got, code := 1, fsm.OK
	var err error
	if k > 1 {
		got, code, err = n.splitCounter(ctx, req.Name, k)
		n.splitLog.add(SplitEvent{Name: req.Name, From: from, To: k, Got: got, Reason: "manual", At: time.Now(), Err: errText(code, err)})
	} else {
		// 1 asks for no split: fine if there is none, a shrink if there is.
		var vals []counterRead
		vals, err = n.readCounters(ctx, []string{req.Name}, true)
		if err == nil {
			got = vals[0].split
			if got > 1 {
				code = fsm.ErrSplitShrink
			}
		}
	}
	if err != nil {
		return SplitResult{}, clusterError(err)
	}
	switch code {
	case fsm.OK:
		return SplitResult{Name: req.Name, Factor: got}, nil
	case fsm.ErrSplitShrink:
		return SplitResult{}, withValue(CodeSplitShrink, fmt.Sprintf("the counter is split %d ways; a split factor can only grow", got), int64(got))
	case fsm.ErrNotSplittable:
		return SplitResult{}, &Error{Code: CodeNotSplittable, Message: "a counter with an expiry (ttl_ms) cannot be split"}
	}
	return SplitResult{}, &Error{Code: CodeInternal, Message: "unexpected result code " + code.String()}
}

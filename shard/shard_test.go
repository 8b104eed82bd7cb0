package shard

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tally/fsm"
)

// TestGroupCommitConcurrentProposals: 200 callers each add 1 to one counter
// at once. Each must get its own result (so the values are exactly 1..200),
// the counter must end at 200, and the proposals must have shared raft
// entries (group commit) rather than taking one entry each.
func TestGroupCommitConcurrentProposals(t *testing.T) {
	t.Parallel()
	g := startGroup(t, 3, nil)
	l := g.nodes[g.waitLeader()].sh
	mark := g.batchMark()

	const n = 200
	vals := make([]int64, n)
	errs := make([]error, n)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			res, err := l.Propose(ctx, []fsm.Op{add("hits", 1)})
			switch {
			case err != nil:
				errs[i] = err
			case len(res) != 1:
				errs[i] = fmt.Errorf("%d results for 1 op", len(res))
			case res[0].Code != fsm.OK:
				errs[i] = fmt.Errorf("code %v", res[0].Code)
			default:
				vals[i] = res[0].Value
			}
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("caller %d: %v", i, err)
		}
	}
	slices.Sort(vals)
	for i, v := range vals {
		if v != int64(i+1) {
			t.Fatalf("results are not exactly 1..%d (each caller its own result): sorted values %v", n, vals)
		}
	}
	if got := mustRead(t, l, true, "hits")[0]; got != n {
		t.Fatalf("final value %d, want %d", got, n)
	}

	// ObserveBatch saw every entry formed since mark: the 200 ops, plus
	// zero-op term markers if the leader changed (which would have failed
	// the proposals above anyway).
	batches := g.batchesSince(mark)
	sum, entries, biggest := 0, 0, 0
	for _, ops := range batches {
		sum += ops
		if ops > 0 {
			entries++
		}
		biggest = max(biggest, ops)
	}
	t.Logf("200 proposals took %d raft entries: %v", entries, batches)
	if sum != n {
		t.Fatalf("ObserveBatch saw %d ops in total, want %d: %v", sum, n, batches)
	}
	// 200 callers released at once queue while the first entries commit
	// (a network round trip and an apply, with only MaxInflight=2 entries
	// in flight), so the next entry takes all of them. All 200 going one
	// per entry would need every commit to finish before the next caller
	// even reached the queue.
	if biggest < 2 {
		t.Fatalf("no entry carried more than one op (%d entries for %d proposals): group commit is not batching", entries, n)
	}
}

// TestGroupCommitTakesQueuedProposalsUpToMaxBatchOps is the deterministic
// form of group commit: while the proposer is held on one entry, 100
// two-op proposals queue; once released, it packs them into entries of
// MaxBatchOps ops each, in queue order, and hands each caller its own
// results (two consecutive values).
func TestGroupCommitTakesQueuedProposalsUpToMaxBatchOps(t *testing.T) {
	t.Parallel()
	g := startGroup(t, 1, func(_ int, c *Config) { c.MaxBatchOps = 50 })
	s := g.nodes[0].sh
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	gt := holdProposer(g, func(_, ops int) bool { return ops > 0 })
	mark := g.batchMark()
	first := proposeAsync(ctx, s, add("c", 1), add("c", 1), add("c", 1))
	gt.waitHeld(t)
	rest := make([]<-chan asyncResult, 100)
	for i := range rest {
		rest[i] = proposeAsync(ctx, s, add("c", 1), add("c", 1))
	}
	waitFor(t, waitTimeout, "100 proposals queued behind the held entry", func() bool { return queued(s) == len(rest) })
	gt.release()

	r := await(t, first, "the first proposal")
	if want := []fsm.Result{{Value: 1}, {Value: 2}, {Value: 3}}; r.err != nil || !slices.Equal(r.res, want) {
		t.Fatalf("first proposal: %v %v, want %v", r.res, r.err, want)
	}
	var vals []int64
	for i, ch := range rest {
		r := await(t, ch, "a queued proposal")
		if r.err != nil || len(r.res) != 2 || r.res[0].Code != fsm.OK || r.res[1].Code != fsm.OK || r.res[1].Value != r.res[0].Value+1 {
			t.Fatalf("queued proposal %d: %v %v, want two ok results with consecutive values", i, r.res, r.err)
		}
		vals = append(vals, r.res[0].Value, r.res[1].Value)
	}
	slices.Sort(vals)
	for i, v := range vals {
		if v != int64(i+4) {
			t.Fatalf("queued proposals' results are not exactly 4..203: %v", vals)
		}
	}
	if got, want := g.batchesSince(mark), []int{3, 50, 50, 50, 50}; !slices.Equal(got, want) {
		t.Fatalf("ObserveBatch saw entries of %v ops, want %v (everything queued, MaxBatchOps ops per entry)", got, want)
	}
	if got := mustRead(t, s, true, "c")[0]; got != 203 {
		t.Fatalf("value %d, want 203", got)
	}
}

// TestProposeReturnsOneResultPerOp: the ops of one Propose get their own
// results, in order; an overflowing op fails alone (ErrOverflow, value
// unchanged) while the others apply; followers reach the same state.
func TestProposeReturnsOneResultPerOp(t *testing.T) {
	t.Parallel()
	g := startGroup(t, 3, nil)
	li := g.waitLeader()
	l := g.nodes[li].sh

	res := mustPropose(t, l,
		add("a", 1),
		add("big", math.MaxInt64),
		add("big", 1), // overflows: nothing changes
		add("a", 2),
		add("neg", -5),
		add("neg", math.MinInt64), // overflows downwards
		add("big", -1),
	)
	want := []fsm.Result{
		{Value: 1, Code: fsm.OK},
		{Value: math.MaxInt64, Code: fsm.OK},
		{Value: math.MaxInt64, Code: fsm.ErrOverflow},
		{Value: 3, Code: fsm.OK},
		{Value: -5, Code: fsm.OK},
		{Value: -5, Code: fsm.ErrOverflow},
		{Value: math.MaxInt64 - 1, Code: fsm.OK},
	}
	if !slices.Equal(res, want) {
		t.Fatalf("results\n got %v\nwant %v", res, want)
	}
	names := []string{"a", "big", "neg"}
	wantVals := []int64{3, math.MaxInt64 - 1, -5}
	if got := mustRead(t, l, true, names...); !slices.Equal(got, wantVals) {
		t.Fatalf("leader reads %v, want %v", got, wantVals)
	}
	for _, fi := range g.followers(li) {
		f := g.nodes[fi].sh
		waitFor(t, waitTimeout, "follower "+g.nodes[fi].id+" to apply the entry", func() bool {
			return slices.Equal(mustRead(t, f, false, names...), wantVals)
		})
	}
}

// TestIdempotencyKeyThroughRaft: an op retried with the same key gets the
// first result and counts once, even after the counter moved; the same key
// with a different op is refused (ErrKeyReused) and changes nothing.
func TestIdempotencyKeyThroughRaft(t *testing.T) {
	t.Parallel()
	g := startGroup(t, 3, nil)
	l := g.nodes[g.waitLeader()].sh

	first := mustPropose(t, l, addKey("c", 5, "req-1"))[0]
	if first != (fsm.Result{Value: 5, Code: fsm.OK}) {
		t.Fatalf("first keyed add: %v", first)
	}
	if again := mustPropose(t, l, addKey("c", 5, "req-1"))[0]; again != first {
		t.Fatalf("retry with the same key: %v, want the first result %v", again, first)
	}
	if r := mustPropose(t, l, add("c", 1))[0]; r.Value != 6 {
		t.Fatalf("unkeyed add after the retry: %v, want value 6 (the retry must not count)", r)
	}
	if again := mustPropose(t, l, addKey("c", 5, "req-1"))[0]; again != first {
		t.Fatalf("retry after the counter moved: %v, want the first result %v", again, first)
	}
	if r := mustPropose(t, l, addKey("c", 7, "req-1"))[0]; r != (fsm.Result{Value: 6, Code: fsm.ErrKeyReused}) {
		t.Fatalf("same key, different delta: %v, want {6 key_reused}", r)
	}
	// The same key twice in one Propose: the second is a retry of the first.
	if r := mustPropose(t, l, addKey("d", 1, "req-2"), addKey("d", 1, "req-2")); !slices.Equal(r, []fsm.Result{{Value: 1}, {Value: 1}}) {
		t.Fatalf("same key twice in one Propose: %v, want [{1 ok} {1 ok}]", r)
	}
	if got := mustRead(t, l, true, "c", "d"); !slices.Equal(got, []int64{6, 1}) {
		t.Fatalf("values %v, want [6 1]", got)
	}
}

// TestFollowerRedirectsAndServesStaleReads: on a follower, Propose and
// linearizable Read do nothing and return *NotLeaderError naming the
// leader; a stale Read returns the follower's state once it has applied.
func TestFollowerRedirectsAndServesStaleReads(t *testing.T) {
	t.Parallel()
	g := startGroup(t, 3, nil)
	li := g.waitLeader()
	leader := g.nodes[li]
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()

	checkNotLeader := func(what, follower string, err error) {
		t.Helper()
		nl, ok := IsNotLeader(err)
		if !ok {
			t.Fatalf("%s on follower %s: %v, want *NotLeaderError", what, follower, err)
		}
		if nl.Shard != g.id || nl.LeaderID != leader.id || nl.LeaderAddr != leader.mux.Addr() {
			t.Fatalf("%s on follower %s: %+v, want shard %d, leader %s at %s", what, follower, nl, g.id, leader.id, leader.mux.Addr())
		}
		if !strings.Contains(err.Error(), leader.id) {
			t.Fatalf("%s: message %q does not name the leader", what, err)
		}
	}
	for _, fi := range g.followers(li) {
		f := g.nodes[fi]
		waitFor(t, waitTimeout, f.id+" to learn the leader", func() bool {
			id, addr := f.sh.Leader()
			return id == leader.id && addr == leader.mux.Addr()
		})
		if f.sh.IsLeader() {
			t.Fatalf("follower %s says it leads", f.id)
		}
		_, err := f.sh.Propose(ctx, []fsm.Op{add("c", 1)})
		checkNotLeader("Propose", f.id, err)
		_, err = f.sh.Read(ctx, []string{"c"}, true)
		checkNotLeader("linearizable Read", f.id, err)
	}

	// The followers' Proposes added nothing.
	if r := mustPropose(t, leader.sh, add("c", 10))[0]; r.Value != 10 {
		t.Fatalf("add on the leader: %v, want value 10 (a follower's Propose was applied)", r)
	}
	for _, fi := range g.followers(li) {
		f := g.nodes[fi]
		waitFor(t, waitTimeout, f.id+" to apply the write (stale read)", func() bool {
			v := mustRead(t, f.sh, false, "c")[0]
			if v != 0 && v != 10 {
				t.Fatalf("stale read on %s: %d, want 0 or 10", f.id, v)
			}
			return v == 10
		})
	}
}

// TestLinearizableReadAfterWrite: a value acknowledged by Propose is seen by
// every linearizable Read that starts afterwards: by the writer's own next
// read, and by a concurrent reader whose reads must never go backwards nor
// below what was acknowledged before they started.
func TestLinearizableReadAfterWrite(t *testing.T) {
	t.Parallel()
	g := startGroup(t, 3, nil)
	l := g.nodes[g.waitLeader()].sh

	var acked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var reads atomic.Int64
	wg.Go(func() {
		last := int64(0)
		for {
			select {
			case <-stop:
				return
			default:
			}
			floor := acked.Load()
			ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
			vals, err := l.Read(ctx, []string{"c"}, true)
			cancel()
			if err != nil {
				t.Errorf("concurrent linearizable read: %v", err)
				return
			}
			if vals[0] < floor || vals[0] < last {
				t.Errorf("concurrent linearizable read returned %d after %d was acknowledged and %d was read", vals[0], floor, last)
				return
			}
			last = vals[0]
			reads.Add(1)
		}
	})
	defer func() {
		close(stop)
		wg.Wait()
	}()

	for i := 1; i <= 50; i++ {
		v := mustPropose(t, l, add("c", 1))[0].Value
		if v != int64(i) {
			t.Fatalf("write %d acknowledged value %d", i, v)
		}
		acked.Store(v)
		if got := mustRead(t, l, true, "c")[0]; got < v {
			t.Fatalf("linearizable read after write %d returned %d < acknowledged %d", i, got, v)
		}
	}
	n := reads.Load()
	waitFor(t, waitTimeout, "the concurrent reader to read after the last write", func() bool {
		return reads.Load() > n
	})
}

// TestLeaderFailoverKeepsAcknowledgedWrites: when the leader stops, one of
// the others takes over; until it serves reads, replicas refuse
// linearizable reads rather than return old values; every acknowledged
// write survives; a keyed retry still dedups; new writes succeed.
func TestLeaderFailoverKeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	g := startGroup(t, 3, nil)
	li := g.waitLeader()
	l := g.nodes[li].sh

	var ack int64
	for range 30 {
		ack = mustPropose(t, l, add("c", 1))[0].Value
	}
	keyed := mustPropose(t, l, addKey("d", 1000, "once"))[0]
	if ack != 30 || keyed != (fsm.Result{Value: 1000}) {
		t.Fatalf("before failover: c=%d, keyed add %v", ack, keyed)
	}
	old := g.nodes[li].id
	g.stop(li)

	// Poll the survivors: a linearizable read either fails with a
	// retryable error or returns everything acknowledged (no other writer
	// ran, so exactly that).
	ni := -1
	attempts := 0
	waitFor(t, waitTimeout, "a new leader serving linearizable reads", func() bool {
		for _, i := range g.followers(li) {
			attempts++
			vals, err := tryRead(g.nodes[i].sh, "c", "d")
			if err != nil {
				if !isRetryable(err) {
					t.Fatalf("linearizable read on %s during failover: %v (want NotLeaderError or ErrUnavailable)", g.nodes[i].id, err)
				}
				continue
			}
			if vals[0] != ack || vals[1] != 1000 {
				t.Fatalf("linearizable read on %s after failover: c=%d d=%d, want c=%d d=1000 (acknowledged writes lost or not yet applied)", g.nodes[i].id, vals[0], vals[1], ack)
			}
			ni = i
			return true
		}
		return false
	})
	nl := g.nodes[ni]
	t.Logf("leader %s stopped; %s took over (%d read attempts)", old, nl.id, attempts)
	if id, _ := nl.sh.Leader(); id != nl.id || !nl.sh.IsLeader() {
		t.Fatalf("new leader %s: IsLeader=%v, Leader()=%q", nl.id, nl.sh.IsLeader(), id)
	}

	if r := mustPropose(t, nl.sh, addKey("d", 1000, "once"))[0]; r != keyed {
		t.Fatalf("keyed retry on the new leader: %v, want the first result %v", r, keyed)
	}
	if r := mustPropose(t, nl.sh, add("c", 1))[0]; r.Value != ack+1 {
		t.Fatalf("write on the new leader: %v, want value %d", r, ack+1)
	}
	if got := mustRead(t, nl.sh, true, "c", "d"); !slices.Equal(got, []int64{ack + 1, 1000}) {
		t.Fatalf("after failover: %v, want [%d 1000]", got, ack+1)
	}
	for _, fi := range g.followers(ni) {
		f := g.nodes[fi]
		waitFor(t, waitTimeout, "the other survivor to follow "+nl.id, func() bool {
			id, _ := f.sh.Leader()
			return id == nl.id && mustRead(t, f.sh, false, "c")[0] == ack+1
		})
	}
}

// TestLinearizableReadWaitsForTermMarker: a new leader must not serve
// linearizable reads before its term marker is applied. The new leader's
// proposer is held on the marker entry, deterministically keeping it
// unapplied; reads must be refused until it is released.
func TestLinearizableReadWaitsForTermMarker(t *testing.T) {
	t.Parallel()
	g := startGroup(t, 3, nil)
	li := g.waitLeader()
	ack := mustPropose(t, g.nodes[li].sh, add("c", 42))[0].Value

	gt := holdProposer(g, func(_, ops int) bool { return ops == 0 }) // term markers only
	g.stop(li)
	ni := gt.waitHeld(t) // a survivor became leader and formed its marker
	nl := g.nodes[ni].sh
	for range 3 {
		vals, err := tryRead(nl, "c")
		if err == nil {
			t.Fatalf("linearizable read on new leader %s served %v before its term marker was applied", g.nodes[ni].id, vals)
		}
		if !isRetryable(err) {
			t.Fatalf("linearizable read before the term marker: %v, want NotLeaderError or ErrUnavailable", err)
		}
	}
	gt.release()
	ni = g.waitLeader()
	if got := mustRead(t, g.nodes[ni].sh, true, "c")[0]; got != ack {
		t.Fatalf("after the marker: %d, want %d", got, ack)
	}
}

// TestProposeWithDoneContextProposesNothing: a context that is done before
// the proposal is taken into an entry gives ErrUnavailable, and nothing is
// applied. The proposer is held so that "before it is taken" does not
// depend on timing.
func TestProposeWithDoneContextProposesNothing(t *testing.T) {
	t.Parallel()
	g := startGroup(t, 1, nil)
	s := g.nodes[0].sh
	bg, cancelBg := context.WithTimeout(context.Background(), waitTimeout)
	defer cancelBg()

	gt := holdProposer(g, func(_, ops int) bool { return ops > 0 })
	held := proposeAsync(bg, s, add("other", 1))
	gt.waitHeld(t)

	cancelled, cancel := context.WithCancel(bg)
	cancel()
	if _, err := s.Propose(cancelled, []fsm.Op{add("c", 1)}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Propose with a cancelled context: %v, want ErrUnavailable", err)
	}
	expired, cancel2 := context.WithDeadline(bg, time.Now().Add(-time.Second))
	defer cancel2()
	if _, err := s.Propose(expired, []fsm.Op{add("c", 1)}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Propose with an expired context: %v, want ErrUnavailable", err)
	}

	// A context that ends while the proposal waits in the queue.
	before := queued(s)
	ctx, cancel3 := context.WithCancel(bg)
	waiting := proposeAsync(ctx, s, add("c", 1))
	waitFor(t, waitTimeout, "the proposal to queue", func() bool { return queued(s) == before+1 })
	cancel3()
	if r := await(t, waiting, "the cancelled proposal"); !errors.Is(r.err, ErrUnavailable) {
		t.Fatalf("Propose cancelled while queued: %v %v, want ErrUnavailable", r.res, r.err)
	}

	gt.release()
	if r := await(t, held, "the held proposal"); r.err != nil || r.res[0].Value != 1 {
		t.Fatalf("held proposal: %v %v", r.res, r.err)
	}
	// Anything queued above was queued ahead of this add: had it been
	// applied, this result would include it.
	if r := mustPropose(t, s, add("c", 100))[0]; r.Value != 100 {
		t.Fatalf("add after the abandoned proposals: %v, want value 100 (an abandoned proposal was applied)", r)
	}
	if got := mustRead(t, s, true, "c")[0]; got != 100 {
		t.Fatalf("value %d, want 100", got)
	}
}

// TestTransferLeadership: after a transfer to a chosen follower, it leads
// and serves reads with every acknowledged write; the old leader refuses
// writes and linearizable reads, naming the new one; OnLeaderChange told
// both.
func TestTransferLeadership(t *testing.T) {
	t.Parallel()
	g := startGroup(t, 3, nil)
	li := g.waitLeader()
	old := g.nodes[li]
	ack := mustPropose(t, old.sh, add("c", 5))[0].Value
	target := g.nodes[g.followers(li)[0]]

	if err := old.sh.TransferLeadership(target.id, target.mux.Addr()); err != nil {
		t.Fatalf("TransferLeadership to %s: %v", target.id, err)
	}
	waitFor(t, waitTimeout, target.id+" to serve linearizable reads", func() bool {
		vals, err := tryRead(target.sh, "c")
		if err == nil && vals[0] != ack {
			t.Fatalf("new leader reads %d, want %d", vals[0], ack)
		}
		return err == nil
	})
	if r := mustPropose(t, target.sh, add("c", 1))[0]; r.Value != ack+1 {
		t.Fatalf("write on the new leader: %v", r)
	}
	waitFor(t, waitTimeout, old.id+" to learn the new leader", func() bool {
		id, _ := old.sh.Leader()
		return id == target.id
	})
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if _, err := old.sh.Propose(ctx, []fsm.Op{add("c", 1)}); !isNotLeaderNaming(err, target.id) {
		t.Fatalf("Propose on the old leader: %v, want NotLeaderError naming %s", err, target.id)
	}
	if _, err := old.sh.Read(ctx, []string{"c"}, true); !isNotLeaderNaming(err, target.id) {
		t.Fatalf("linearizable Read on the old leader: %v, want NotLeaderError naming %s", err, target.id)
	}
	waitFor(t, waitTimeout, "OnLeaderChange on both replicas", func() bool {
		n, ok1 := g.lastLeaderChange(g.indexOf(target.id))
		o, ok2 := g.lastLeaderChange(li)
		return ok1 && ok2 && n && !o
	})
}

func isNotLeaderNaming(err error, id string) bool {
	nl, ok := IsNotLeader(err)
	return ok && nl.LeaderID == id
}

func (g *group) indexOf(id string) int {
	for i, nd := range g.nodes {
		if nd.id == id {
			return i
		}
	}
	return -1
}

// TestCloseFailsPendingProposals: Close makes proposals that are queued or
// being formed fail (ErrClosed, or ErrOutcomeUnknown for one that may have
// reached raft), never succeed, and a Propose after Close fails at once.
// The callers' contexts have deadlines: see TestBugCloseStrandsProposal for
// why a caller without one may hang.
func TestCloseFailsPendingProposals(t *testing.T) {
	t.Parallel()
	g := startGroup(t, 1, nil)
	s := g.nodes[0].sh
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()

	gt := holdProposer(g, func(_, ops int) bool { return ops > 0 })
	held := proposeAsync(ctx, s, add("c", 1))
	gt.waitHeld(t)
	waiting := proposeAsync(ctx, s, add("c", 1))
	waitFor(t, waitTimeout, "the second proposal to queue", func() bool { return queued(s) == 1 })

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("Close did not return within %v", waitTimeout)
	}
	gt.release()
	for what, ch := range map[string]<-chan asyncResult{"the proposal being formed": held, "the queued proposal": waiting} {
		r := await(t, ch, what)
		if !errors.Is(r.err, ErrClosed) && !errors.Is(r.err, ErrOutcomeUnknown) {
			t.Fatalf("%s after Close: %v %v, want ErrClosed or ErrOutcomeUnknown", what, r.res, r.err)
		}
	}
	if r := await(t, proposeAsync(context.Background(), s, add("c", 1)), "Propose after Close"); r.err == nil {
		t.Fatalf("Propose after Close succeeded: %v", r.res)
	}
}

// TestBatchLingerWaitsForCallersUnderLoad: after an entry of several ops,
// the next entry, starting with one op, waits (up to BatchLinger) for the
// callers still on their way, so a proposal arriving a moment later rides
// in the same entry instead of costing one of its own.
func TestBatchLingerWaitsForCallersUnderLoad(t *testing.T) {
	t.Parallel()
	g := startGroup(t, 1, func(_ int, c *Config) { c.BatchLinger = time.Second })
	s := g.nodes[0].sh
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	mustPropose(t, s, add("c", 1), add("c", 1), add("c", 1), add("c", 1)) // an entry of 4: load
	mark := g.batchMark()
	lingers := s.prop.lingers.Load()
	a := proposeAsync(ctx, s, add("c", 1))
	waitFor(t, waitTimeout, "the proposer to take the first proposal and wait for more", func() bool { return s.prop.lingers.Load() > lingers })
	b := proposeAsync(ctx, s, add("c", 1))
	for _, ch := range []<-chan asyncResult{a, b} {
		if r := await(t, ch, "a proposal"); r.err != nil {
			t.Fatal(r.err)
		}
	}
	if got := g.batchesSince(mark); !slices.Equal(got, []int{2}) {
		t.Fatalf("entries of %v ops after an entry of 4, want one of 2: the second proposal should have joined the lingering entry", got)
	}
}

// TestBatchLingerDoesNotDelayALoneCaller: one caller at a time never
// waits for company (the last entry had one op), however long the linger.
func TestBatchLingerDoesNotDelayALoneCaller(t *testing.T) {
	t.Parallel()
	const linger = 2 * time.Second
	g := startGroup(t, 1, func(_ int, c *Config) { c.BatchLinger = linger })
	s := g.nodes[0].sh
	mustPropose(t, s, add("c", 1))
	start := time.Now()
	for range 5 {
		mustPropose(t, s, add("c", 1))
	}
	if d := time.Since(start); d >= linger {
		t.Fatalf("5 proposals one after another took %v: a lone caller waited for the %v linger", d, linger)
	}
}

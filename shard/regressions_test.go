package shard

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"tally/fsm"
)

// Regression tests for bugs found in shard/*.go while writing this suite.
// Each fails against the code as first committed (7b1958a); the comments
// say how. They check only the behaviour, not the shape of a fix.

// bugWait bounds how long these tests wait for a call that should return
// promptly (a closing shard may take its 5 s grace first).
const bugWait = 15 * time.Second

// TestReadAfterCloseReturns: Read(ctx without deadline, linearizable) on a
// closed shard must return an error. It used to block forever about half
// the time: reader.wait's first select had both `rd.ch <- req` (buffer
// space) and `<-rd.stop` (closed) ready and picked one at random; an
// enqueued request was never answered, because no loop was left and the
// second select did not watch rd.stop.
func TestReadAfterCloseReturns(t *testing.T) {
	t.Parallel()
	g := startGroup(t, 1, nil)
	s := g.nodes[0].sh
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	const calls = 20
	errs := make(chan error, calls)
	for range calls {
		go func() {
			_, err := s.Read(context.Background(), []string{"c"}, true)
			errs <- err
		}()
	}
	deadline := time.After(bugWait)
	for i := range calls {
		select {
		case err := <-errs:
			if err == nil {
				t.Errorf("linearizable Read on a closed shard succeeded")
			}
		case <-deadline:
			t.Fatalf("%d of %d linearizable Reads on a closed shard still blocked after %v", calls-i, calls, bugWait)
		}
	}
}

// TestProposalRacingCloseReturns: a proposal made as Close runs (ctx
// without deadline) must return. Close closes the proposer's stop channel
// before raft shuts down, so in that window Shard.Propose still passes its
// State()==Leader check and calls proposer.propose, which used to pick at
// random between `p.ch <- pr` (buffer space) and `<-p.stop` (closed); once
// the loop had run failQueued and exited, an enqueued proposal was never
// answered, because the second select did not watch p.stop. The public
// window is microseconds wide, so this calls the proposer directly after
// Close, as such a Propose (or markTerm, which calls it directly) would.
func TestProposalRacingCloseReturns(t *testing.T) {
	t.Parallel()
	g := startGroup(t, 1, nil)
	s := g.nodes[0].sh
	if err := s.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	const calls = 20
	errs := make(chan error, calls)
	for range calls {
		go func() {
			_, err := s.prop.propose(context.Background(), []fsm.Op{add("c", 1)})
			errs <- err
		}()
	}
	deadline := time.After(bugWait)
	for i := range calls {
		select {
		case err := <-errs:
			if err == nil {
				t.Errorf("proposal on a closed shard succeeded")
			}
		case <-deadline:
			t.Fatalf("%d of %d proposals made as Close ran are still blocked after %v", calls-i, calls, bugWait)
		}
	}
}

// TestProposalFormedAsCloseRunsIsAnswered: a proposal whose entry is handed
// to raft while Close runs must be answered (ctx without deadline). Open
// sets raft's BatchApplyCh, which buffers raft's applyCh; raft.Apply after
// Shutdown picks at random between `<-r.shutdownCh` and `r.applyCh <-
// future`, and a future left in the buffer is never completed. The
// proposer's finish used to wait on f.Error() with no bound, so the caller
// hung forever (and held an inflight slot). The proposer is held on an
// entry across Close and then released; each replica loses its future
// about half the time, so this runs three replicas.
func TestProposalFormedAsCloseRunsIsAnswered(t *testing.T) {
	t.Parallel()
	var helds []<-chan asyncResult
	for range 3 {
		g := startGroup(t, 1, nil)
		s := g.nodes[0].sh
		gt := holdProposer(g, func(_, ops int) bool { return ops > 0 })
		held := proposeAsync(context.Background(), s, add("c", 1))
		gt.waitHeld(t)
		if err := s.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		gt.release()
		helds = append(helds, held)
	}
	deadline := time.After(bugWait)
	for i, held := range helds {
		select {
		case r := <-held:
			if !errors.Is(r.err, ErrOutcomeUnknown) && !errors.Is(r.err, ErrClosed) {
				t.Fatalf("replica %d: proposal formed as Close ran: %v %v, want ErrOutcomeUnknown or ErrClosed", i, r.res, r.err)
			}
		case <-deadline:
			t.Fatalf("replica %d: a proposal formed as Close ran is still unanswered after %v (its caller has no deadline)", i, bugWait)
		}
	}
}

// TestProposeWithCancelledContextNeverProposes: the contract is "if ctx
// ends before the entry was formed, nothing was proposed
// (ErrUnavailable)". A context already done used to be enqueued about half
// the time (the first select picked `p.ch <- pr` though ctx.Done() was
// ready) and the loop could take it before the caller marked it
// abandoned: the caller then got ErrOutcomeUnknown or even a result, and
// the op was applied. Under -race that happened a few times per thousand
// calls; this makes 40000.
func TestProposeWithCancelledContextNeverProposes(t *testing.T) {
	t.Parallel()
	g := startGroup(t, 1, nil)
	s := g.nodes[0].sh
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var mu sync.Mutex
	bad := map[string]int{}
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 10000 {
				_, err := s.Propose(ctx, []fsm.Op{add("c", 1)})
				if errors.Is(err, ErrUnavailable) {
					continue
				}
				mu.Lock()
				if err == nil {
					bad["success"]++
				} else {
					bad[err.Error()]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	v := mustRead(t, s, true, "c")[0]
	if len(bad) > 0 || v != 0 {
		t.Fatalf("40000 Proposes with a cancelled context: not ErrUnavailable: %v; counter is %d, want 0", bad, v)
	}
}

// TestInvalidOpDoesNotFailOtherCallers: an invalid op (empty or oversized
// name or key, unknown kind) must fail on its own, not take down the
// valid ops of other callers grouped into the same entry. Propose used not
// to validate: the invalid op was encoded into the shared entry,
// fsm.DecodeEntry rejected the whole entry on every replica, and every
// caller in it got "decode entry N: fsm: ...", none of the documented
// errors. The proposer is held so that, if the invalid op is queued at
// all, it deterministically shares an entry with a valid one.
func TestInvalidOpDoesNotFailOtherCallers(t *testing.T) {
	t.Parallel()
	g := startGroup(t, 1, nil)
	s := g.nodes[0].sh
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()

	invalidOps := map[string]fsm.Op{
		"empty name":    add("", 1),
		"long name":     add(strings.Repeat("n", fsm.MaxNameLen+1), 1),
		"long key":      addKey("c", 1, strings.Repeat("k", fsm.MaxKeyLen+1)),
		"unknown kind":  {Kind: 99, Name: "c", Delta: 1},
		"zero-value op": {},
	}
	for what, op := range invalidOps {
		gt := holdProposer(g, func(_, ops int) bool { return ops > 0 })
		held := proposeAsync(ctx, s, add("other", 1))
		gt.waitHeld(t)

		// The invalid proposal either is refused at once or queues.
		invalid := proposeAsync(ctx, s, add("c", 1), op)
		var ri asyncResult
		refused := false
		waitFor(t, waitTimeout, what+": the invalid proposal to queue or be refused", func() bool {
			select {
			case ri = <-invalid:
				refused = true
				return true
			default:
				return queued(s) == 1
			}
		})
		before := mustRead(t, s, false, "c")[0]
		valid := proposeAsync(ctx, s, add("c", 1))
		waitFor(t, waitTimeout, what+": the valid proposal to queue", func() bool { return queued(s) == map[bool]int{true: 1, false: 2}[refused] })
		gt.release()

		if r := await(t, held, what+": the held proposal"); r.err != nil {
			t.Fatalf("%s: held proposal: %v", what, r.err)
		}
		if !refused {
			ri = await(t, invalid, what+": the invalid proposal")
		}
		rv := await(t, valid, what+": the valid proposal")
		if rv.err != nil || len(rv.res) != 1 || rv.res[0].Code != fsm.OK {
			t.Fatalf("%s: valid op sharing an entry with an invalid one: %v %v, want an ok result", what, rv.res, rv.err)
		}
		// The invalid proposal fails as a whole (an error), or its op gets
		// ErrInvalidOp; either way it is not reported as applied.
		if ri.err == nil && (len(ri.res) != 2 || ri.res[1].Code != fsm.ErrInvalidOp) {
			t.Fatalf("%s: invalid op reported %v", what, ri.res)
		}
		after := mustRead(t, s, true, "c")[0]
		want := before + 1
		if ri.err == nil {
			want++ // the valid op of the invalid proposal applied
		}
		if after != want {
			t.Fatalf("%s: counter went from %d to %d, want %d", what, before, after, want)
		}
	}
}

// TestIsLeaderMeansReadsAreServed: IsLeader is documented as "leads the
// shard and can serve linearizable reads (its term marker is applied)".
// It used to check only raft's State(), answering true on a new leader
// whose marker was not yet applied, while that replica's linearizable
// Reads failed with a NotLeaderError naming itself (node.leaderOf routes
// to a replica on IsLeader). The new leader's proposer is held on the
// marker entry so the window stays open.
func TestIsLeaderMeansReadsAreServed(t *testing.T) {
	t.Parallel()
	g := startGroup(t, 3, nil)
	li := g.waitLeader()
	gt := holdProposer(g, func(_, ops int) bool { return ops == 0 }) // term markers only
	g.stop(li)
	ni := gt.waitHeld(t)
	s := g.nodes[ni].sh
	_, err := tryRead(s, "c")
	if err == nil {
		t.Fatalf("linearizable read served before the term marker was applied")
	}
	if s.IsLeader() {
		t.Fatalf("IsLeader() = true on %s before its term marker is applied; its linearizable Read meanwhile says: %v", g.nodes[ni].id, err)
	}
	gt.release()
	g.waitLeader() // some replica (normally this one) leads and serves reads
}

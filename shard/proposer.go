package shard

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"tally/fsm"
)

// proposer is group commit: it coalesces the ops of concurrent callers into
// one raft entry, so one log append and one fsync on each replica cover
// them all, and hands every caller its own slice of the results. While
// maxInflight entries are being committed, new proposals queue up, and the
// next entry takes everything queued. Under load (the last entry carried
// more than one op) an entry that starts smaller than the last one waits
// up to linger for the callers still on their way: a node whose CPU is
// busy serving them gets its answers out late, and without the wait the
// next entry would leave with the few that are back, costing a round and
// an fsync on every replica for a handful of ops.
type proposer struct {
	r           *raft.Raft
	id          uint32
	ch          chan *proposal
	inflight    chan struct{}
	maxOps      int
	stop        chan struct{}
	batchSizes  func(int) // observes ops per entry (metrics); may be nil
	now         func() time.Time
	applyTimout time.Duration
	linger      time.Duration // 0: no waiting
	last        int           // ops in the last entry
	lingers     atomic.Int64  // entries that waited for more ops (tests)
}

type proposal struct {
	ops   []fsm.Op
	state atomic.Int32 // proposalQueued → proposalTaken | proposalAbandoned
	done  chan proposalResult
}

const (
	proposalQueued int32 = iota
	proposalTaken
	proposalAbandoned
)

type proposalResult struct {
	results []fsm.Result
	err     error
}

func newProposer(r *raft.Raft, id uint32, maxInflight, maxOps int, linger time.Duration, observe func(int)) *proposer {
	p := &proposer{
		linger:      linger,
		r:           r,
		id:          id,
		ch:          make(chan *proposal, 8192),
		inflight:    make(chan struct{}, maxInflight),
		maxOps:      maxOps,
		stop:        make(chan struct{}),
		batchSizes:  observe,
		now:         time.Now,
		applyTimout: 5 * time.Second,
	}
	go p.loop()
	return p
}

// propose submits ops as part of the next entry and waits for their
// results. If ctx ends before the entry was formed, nothing was proposed
// (ErrUnavailable); after that, the outcome is unknown.
func (p *proposer) propose(ctx context.Context, ops []fsm.Op) ([]fsm.Result, error) {
	if ctx.Err() != nil {
		return nil, ErrUnavailable
	}
	pr := &proposal{ops: ops, done: make(chan proposalResult, 1)}
	select {
	case p.ch <- pr:
	case <-ctx.Done():
		return nil, ErrUnavailable
	case <-p.stop:
		return nil, ErrClosed
	}
	stop := p.stop
	for {
		select {
		case res := <-pr.done:
			return res.results, res.err
		case <-ctx.Done():
			if pr.state.CompareAndSwap(proposalQueued, proposalAbandoned) {
				return nil, ErrUnavailable
			}
			return nil, ErrOutcomeUnknown
		case <-stop:
			// The loop is gone: a proposal it never took will not be
			// answered. One it took is in raft, whose shutdown answers it.
			if pr.state.CompareAndSwap(proposalQueued, proposalAbandoned) {
				return nil, ErrClosed
			}
			stop = nil
		}
	}
}

func (p *proposer) close() { close(p.stop) }

func (p *proposer) loop() {
	var buf []byte
	for {
		var first *proposal
		select {
		case first = <-p.ch:
		case <-p.stop:
			p.failQueued()
			return
		}
		// Wait for a commit slot before forming the entry: this wait is
		// what lets the batch grow while earlier entries commit.
		select {
		case p.inflight <- struct{}{}:
		case <-p.stop:
			p.fail(first, ErrClosed)
			p.failQueued()
			return
		}
		batch := []*proposal{}
		n := 0
		take := func(pr *proposal) {
			if pr.state.CompareAndSwap(proposalQueued, proposalTaken) {
				batch = append(batch, pr)
				n += len(pr.ops)
			}
		}
		take(first)
	drain:
		for n < p.maxOps {
			select {
			case pr := <-p.ch:
				take(pr)
			default:
				break drain
			}
		}
		if p.linger > 0 && n < p.last { // n ≥ 1: only after an entry of several ops
			p.lingers.Add(1)
			t := time.NewTimer(p.linger)
		linger:
			for n < p.last && n < p.maxOps {
				select {
				case pr := <-p.ch:
					take(pr)
				case <-t.C:
					break linger
				case <-p.stop:
					break linger
				}
			}
			t.Stop()
		}
		p.last = n
		if len(batch) == 0 {
			<-p.inflight
			continue
		}
		e := fsm.Entry{Time: p.now().UnixNano(), Ops: make([]fsm.Op, 0, n)}
		for _, pr := range batch {
			e.Ops = append(e.Ops, pr.ops...)
		}
		buf = fsm.AppendEntry(buf[:0], &e)
		// raft keeps the slice until it is written; give it its own copy.
		data := append([]byte(nil), buf...)
		if p.batchSizes != nil {
			p.batchSizes(n)
		}
		f := p.r.Apply(data, p.applyTimout)
		go p.finish(f, batch)
	}
}

func (p *proposer) finish(f raft.ApplyFuture, batch []*proposal) {
	err := p.await(f)
	<-p.inflight
	if err != nil {
		err = p.classify(err)
		for _, pr := range batch {
			pr.done <- proposalResult{err: err}
		}
		return
	}
	res, _ := f.Response().(applyResult)
	if res.err != nil {
		for _, pr := range batch {
			pr.done <- proposalResult{err: res.err}
		}
		return
	}
	off := 0
	for _, pr := range batch {
		k := len(pr.ops)
		pr.done <- proposalResult{results: res.results[off : off+k : off+k]}
		off += k
	}
}

// shutdownGrace is how long a closing shard lets raft answer entries it
// already has before their callers are told the outcome is unknown.
const shutdownGrace = 5 * time.Second

// await waits for f. A future handed to raft as it shuts down can be left
// in raft's buffered apply channel and never answered, so once the shard
// closes, waiting is bounded.
func (p *proposer) await(f raft.ApplyFuture) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-p.stop:
	}
	t := time.NewTimer(shutdownGrace)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return raft.ErrRaftShutdown
	}
}

// classify maps a raft future error to what the caller may conclude.
func (p *proposer) classify(err error) error {
	switch {
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		// Rejected before it was appended: nothing happened.
		addr, id := p.r.LeaderWithID()
		return &NotLeaderError{Shard: p.id, LeaderID: string(id), LeaderAddr: string(addr)}
	case errors.Is(err, raft.ErrEnqueueTimeout):
		return ErrUnavailable
	default:
		// ErrLeadershipLost, ErrRaftShutdown, ErrAbortedByRestore, ...: the
		// entry may be in some log and may still commit.
		return ErrOutcomeUnknown
	}
}

// failQueued answers every proposal still waiting in the channel.
func (p *proposer) failQueued() {
	for {
		select {
		case pr := <-p.ch:
			p.fail(pr, ErrClosed)
		default:
			return
		}
	}
}

func (p *proposer) fail(pr *proposal, err error) {
	if pr.state.CompareAndSwap(proposalQueued, proposalTaken) {
		pr.done <- proposalResult{err: err}
	}
}

package shard

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// reader serves linearizable reads ReadIndex-style, without writing to the
// log: note the commit index, confirm leadership with a heartbeat round
// (VerifyLeader), then wait until the state machine has applied that
// index. One confirmation serves every reader that queued while the
// previous one was in flight, so a burst of reads costs one round trip.
type reader struct {
	r  *raft.Raft
	id uint32
	sm *stateMachine
	// readyTerm is the term in which this replica, as leader, has applied
	// an entry of its own (the term marker). Before that, its commit index
	// may lag what an earlier leader committed, so it must not serve reads.
	readyTerm *atomic.Uint64
	ch        chan *readReq
	stop      chan struct{}
}

// applyWaitTimeout bounds how long a read waits for the local state to
// catch up with the commit index it noted.
const applyWaitTimeout = 5 * time.Second

type readReq struct {
	done chan error
}

func newReader(r *raft.Raft, id uint32, sm *stateMachine, readyTerm *atomic.Uint64) *reader {
	rd := &reader{r: r, id: id, sm: sm, readyTerm: readyTerm, ch: make(chan *readReq, 4096), stop: make(chan struct{})}
	go rd.loop()
	return rd
}

// wait returns nil once the local state reflects every write that
// completed before wait was called.
func (rd *reader) wait(ctx context.Context) error {
	req := &readReq{done: make(chan error, 1)}
	select {
	case rd.ch <- req:
	case <-ctx.Done():
		return ErrUnavailable
	case <-rd.stop:
		return ErrClosed
	}
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ErrUnavailable
	case <-rd.stop:
		return ErrClosed
	}
}

func (rd *reader) close() { close(rd.stop) }

func (rd *reader) loop() {
	for {
		var batch []*readReq
		select {
		case req := <-rd.ch:
			batch = append(batch, req)
		case <-rd.stop:
			return
		}
	drain:
		for {
			select {
			case req := <-rd.ch:
				batch = append(batch, req)
			default:
				break drain
			}
		}
		err := rd.confirm()
		for _, req := range batch {
			req.done <- err
		}
	}
}

func (rd *reader) notLeader() error {
	addr, id := rd.r.LeaderWithID()
	return &NotLeaderError{Shard: rd.id, LeaderID: string(id), LeaderAddr: string(addr)}
}

func (rd *reader) confirm() error {
	term := rd.r.CurrentTerm()
	if rd.r.State() != raft.Leader || rd.readyTerm.Load() != term {
		return rd.notLeader()
	}
	idx := rd.r.CommitIndex()
	if err := rd.r.VerifyLeader().Error(); err != nil {
		return rd.notLeader()
	}
	// Still the same term: the index noted above was this leader's own
	// commit index, which covers every write acknowledged before.
	if rd.r.CurrentTerm() != term {
		return rd.notLeader()
	}
	t := time.NewTimer(applyWaitTimeout)
	defer t.Stop()
	if !rd.sm.waitApplied(idx, rd.stop, t.C) {
		return ErrUnavailable
	}
	return nil
}

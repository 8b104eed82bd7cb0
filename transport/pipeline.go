package transport

import (
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// pipeline is one shard's AppendEntries pipeline to one follower. It stays
// on the connection it was opened on: requests on one connection reach the
// follower's shard in order, and a new connection would not keep that order
// with the old one, so when the connection fails the pipeline fails and raft
// opens another.
//
// At most max requests are unanswered at once; AppendEntries blocks for a
// slot, and a slot frees when a response arrives or the request fails (the
// connection, or the timeout), never only when raft reads the Consumer, so
// a send cannot wait on a decoder that has stopped reading. Futures reach
// Consumer in the order they were sent.
type pipeline struct {
	st     *ShardTransport
	cc     *clientConn
	slots  chan struct{}
	doneCh chan raft.AppendFuture

	mu   sync.Mutex
	fifo []*appendFuture // sent, not yet delivered to doneCh
	kick chan struct{}   // cap 1: fifo is not empty

	closed    chan struct{}
	stopped   chan struct{} // closed when deliver returns
	closeOnce sync.Once
}

func newPipeline(st *ShardTransport, cc *clientConn, max int) *pipeline {
	return &pipeline{
		st:      st,
		cc:      cc,
		slots:   make(chan struct{}, max),
		doneCh:  make(chan raft.AppendFuture, max),
		kick:    make(chan struct{}, 1),
		closed:  make(chan struct{}),
		stopped: make(chan struct{}),
	}
}

// AppendEntries implements raft.AppendPipeline.
func (p *pipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	select {
	case <-p.closed: // checked first: a free slot must not win the race
		return nil, raft.ErrPipelineShutdown
	default:
	}
	select {
	case p.slots <- struct{}{}:
	case <-p.closed:
		return nil, raft.ErrPipelineShutdown
	case <-p.cc.done:
		return nil, p.cc.err
	}
	f := &appendFuture{start: time.Now(), args: args, resp: resp, done: make(chan struct{}), slots: p.slots}
	f.call = call{resp: resp, fut: f}
	if err := p.cc.send(p.st.id, args, &f.call); err != nil {
		return nil, err
	}
	p.mu.Lock()
	p.fifo = append(p.fifo, f)
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return f, nil
}

// Consumer implements raft.AppendPipeline.
func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.doneCh }

// deliver hands completed futures to Consumer in send order.
func (p *pipeline) deliver() {
	defer close(p.stopped)
	for {
		p.mu.Lock()
		var f *appendFuture
		if len(p.fifo) > 0 {
			f = p.fifo[0]
		}
		p.mu.Unlock()
		if f == nil {
			select {
			case <-p.kick:
				continue
			case <-p.closed:
				return
			case <-p.cc.done:
				p.deliverLost()
				return
			}
		}
		select {
		case <-f.done:
		case <-p.closed:
			return
		}
		select {
		case p.doneCh <- f:
		case <-p.closed:
			return
		}
		p.mu.Lock()
		p.fifo[0] = nil
		p.fifo = p.fifo[1:]
		p.mu.Unlock()
	}
}

// deliverLost tells raft that the connection failed while nothing was in
// flight, with a failed future: raft's decoder then ends the pipeline and
// replication goes on over a new connection. Without it, a group with
// nothing to send keeps a pipeline that can never deliver (raft sends an
// idle group's followers nothing but heartbeats, which use their own
// calls), and a follower that restarted would not hear the commit index
// until the group's next write.
func (p *pipeline) deliverLost() {
	done := make(chan struct{})
	close(done)
	p.cc.mu.Lock()
	err := p.cc.err
	p.cc.mu.Unlock()
	lost := &appendFuture{start: time.Now(), args: &raft.AppendEntriesRequest{}, resp: &raft.AppendEntriesResponse{}, err: err, done: done}
	select {
	case p.doneCh <- lost:
	case <-p.closed:
	}
}

// Close implements raft.AppendPipeline: requests still unanswered are
// cancelled (their futures fail with raft.ErrPipelineShutdown); the
// connection stays, other shards use it.
func (p *pipeline) Close() error {
	p.closeOnce.Do(func() {
		close(p.closed)
		<-p.stopped
		p.mu.Lock()
		fifo := p.fifo
		p.fifo = nil
		p.mu.Unlock()
		for _, f := range fifo {
			if p.cc.take(f.call.id) != nil {
				f.complete(raft.ErrPipelineShutdown)
			}
		}
		p.st.forgetPipeline(p)
	})
	return nil
}

// appendFuture implements raft.AppendFuture.
type appendFuture struct {
	call  call // embedded: one allocation per pipelined request
	start time.Time
	args  *raft.AppendEntriesRequest
	resp  *raft.AppendEntriesResponse
	slots chan struct{}

	once sync.Once
	err  error
	done chan struct{}
}

func (f *appendFuture) complete(err error) {
	f.once.Do(func() {
		f.err = err
		close(f.done)
		<-f.slots
	})
}

// Error implements raft.Future; it blocks until the response or failure.
func (f *appendFuture) Error() error {
	<-f.done
	return f.err
}

// Start implements raft.AppendFuture.
func (f *appendFuture) Start() time.Time { return f.start }

// Request implements raft.AppendFuture.
func (f *appendFuture) Request() *raft.AppendEntriesRequest { return f.args }

// Response implements raft.AppendFuture.
func (f *appendFuture) Response() *raft.AppendEntriesResponse { return f.resp }

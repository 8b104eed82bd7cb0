package transport

import (
	"bufio"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// peer is this node's client side towards one other node: at most one
// live connection, dialed on first use and again after it fails.
type peer struct {
	net  *RaftNet
	addr string

	mu      sync.Mutex // held across a dial, so concurrent callers share it
	cur     *clientConn
	closed  bool
	dialErr error     // the last dial's failure, returned again until dialAt
	dialAt  time.Time // when dialErr may be retried
}

// dialRetryDelay is how long a failed dial answers for the peer: the RPCs
// of every shard that queued behind it fail at once instead of each
// dialing an unreachable node in turn.
const dialRetryDelay = 50 * time.Millisecond

// conn returns the live connection to the peer, dialing if there is none.
func (p *peer) conn() (*clientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, raft.ErrTransportShutdown
	}
	if p.cur != nil && !p.cur.dead() {
		return p.cur, nil
	}
	if p.dialErr != nil && time.Now().Before(p.dialAt) {
		return nil, p.dialErr
	}
	nc, err := p.net.mux.dial(p.addr, key{KindRaftNet, 0}, p.net.cfg.Timeout)
	if err != nil {
		p.dialErr, p.dialAt = err, time.Now().Add(dialRetryDelay)
		return nil, err
	}
	p.dialErr = nil
	cc := newClientConn(p.net, p.addr, nc)
	p.cur = cc
	p.net.wg.Go(cc.w.run)
	p.net.wg.Go(cc.readLoop)
	p.net.wg.Go(cc.sweep)
	return cc, nil
}

func (p *peer) close() {
	p.mu.Lock()
	p.closed = true
	cc := p.cur
	p.cur = nil
	p.mu.Unlock()
	if cc != nil {
		cc.fail(raft.ErrTransportShutdown)
	}
}

// call is one request waiting for its response. Whoever removes it from
// its connection's table (the reader, the sweeper, a failing send, or the
// connection's failure) owns it and finishes it exactly once.
type call struct {
	id       uint64
	typ      byte // request type
	resp     any  // filled by the reader before finish(nil)
	sent     int64
	deadline int64
	ch       chan error    // synchronous callers wait here (cap 1)
	fut      *appendFuture // or a pipeline's future is completed
}

func (c *call) finish(err error) {
	if c.fut != nil {
		c.fut.complete(err)
		return
	}
	c.ch <- err
}

// clientConn is one connection this node dialed to a peer: requests of
// every shard go out through its coalescer, responses come back on it and
// are matched to their calls by id.
type clientConn struct {
	net  *RaftNet
	addr string
	c    net.Conn
	w    *coalescer

	lastRead atomic.Int64  // UnixNano of the last frame read
	done     chan struct{} // closed when the connection fails

	mu     sync.Mutex
	calls  map[uint64]*call // nil once failed
	nextID uint64
	err    error
}

func newClientConn(t *RaftNet, addr string, c net.Conn) *clientConn {
	cc := &clientConn{net: t, addr: addr, c: c, done: make(chan struct{}), calls: make(map[uint64]*call)}
	cc.w = newCoalescer(c, t.cfg.Timeout, func(err error) { cc.fail(fmt.Errorf("write: %w", err)) })
	cc.lastRead.Store(time.Now().UnixNano())
	return cc
}

func (cc *clientConn) dead() bool {
	select {
	case <-cc.done:
		return true
	default:
		return false
	}
}

// send registers cl and queues its request. On an error the call is
// finished (or was, by whoever failed the connection) and must not be
// waited for.
func (cc *clientConn) send(shard uint32, cmd any, cl *call) error {
	typ, err := requestType(cmd)
	if err != nil {
		return err
	}
	now := time.Now()
	cl.typ = typ
	cl.sent = now.UnixNano()
	deadline := now.Add(cc.net.cfg.Timeout)
	cl.deadline = deadline.UnixNano()

	cc.mu.Lock()
	if cc.err != nil {
		err := cc.err
		cc.mu.Unlock()
		return err
	}
	cc.nextID++
	cl.id = cc.nextID
	cc.calls[cl.id] = cl
	cc.mu.Unlock()

	err = cc.w.frame(cc.net.cfg.MaxFrame, deadline, typ == msgHeartbeatReq, func(b []byte) ([]byte, error) {
		return appendRequest(b, cl.id, shard, cmd)
	})
	if err != nil {
		if cc.take(cl.id) != nil && cl.fut != nil {
			cl.fut.complete(err)
		}
		return err
	}
	return nil
}

// take removes and returns the call with id, or nil if someone else did.
func (cc *clientConn) take(id uint64) *call {
	cc.mu.Lock()
	cl := cc.calls[id]
	delete(cc.calls, id)
	cc.mu.Unlock()
	return cl
}

// fail closes the connection and fails every call waiting on it. The
// next RPC to this peer dials again.
func (cc *clientConn) fail(err error) {
	cc.mu.Lock()
	if cc.err != nil {
		cc.mu.Unlock()
		return
	}
	cc.err = fmt.Errorf("%w: %s: %v", errConnLost, cc.addr, err)
	calls := cc.calls
	cc.calls = nil
	cc.mu.Unlock()

	close(cc.done)
	cc.w.close(cc.err)
	cc.c.Close()
	for _, cl := range calls {
		cl.finish(cc.err)
	}
	cc.net.logger.Debug("raft connection closed", "peer", cc.addr, "failed_calls", len(calls), "err", err)
}

// readLoop reads responses until the connection fails.
func (cc *clientConn) readLoop() {
	br := bufio.NewReaderSize(cc.c, 64<<10)
	for {
		body, err := readFrame(br, cc.net.cfg.MaxFrame)
		if err != nil {
			cc.fail(fmt.Errorf("read: %w", err))
			return
		}
		cc.lastRead.Store(time.Now().UnixNano())
		h, d, err := decodeResponseHead(body)
		if err != nil {
			cc.fail(err)
			return
		}
		cl := cc.take(h.id)
		if cl == nil {
			continue // it timed out; the response is of no use now
		}
		if h.typ != responseType(cl.typ) {
			err := fmt.Errorf("%w: response type %d to request type %d", errMalformed, h.typ, cl.typ)
			cl.finish(err)
			cc.fail(err)
			return
		}
		if err := decodeResponseBody(&d, h.typ, cl.resp); err != nil {
			cl.finish(err)
			cc.fail(err)
			return
		}
		if h.errMsg != "" {
			cl.finish(fmt.Errorf("%s", h.errMsg))
		} else {
			cl.finish(nil)
		}
	}
}

// sweep fails calls whose deadline passed. A call that expires with
// nothing read on the connection since it was sent means the peer went
// silent (no FIN or RST, as when partitioned or frozen): the connection is
// dropped too, so the next RPC dials afresh instead of queueing behind it.
func (cc *clientConn) sweep() {
	tick := time.NewTicker(max(min(cc.net.cfg.Timeout/4, 250*time.Millisecond), time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-cc.done:
			return
		case <-tick.C:
		}
		now := time.Now().UnixNano()
		lastRead := cc.lastRead.Load()
		var expired []*call
		silent := false
		cc.mu.Lock()
		for id, cl := range cc.calls {
			if cl.deadline <= now {
				delete(cc.calls, id)
				expired = append(expired, cl)
				silent = silent || cl.sent > lastRead
			}
		}
		cc.mu.Unlock()
		for _, cl := range expired {
			cl.finish(errTimeout)
		}
		if silent {
			cc.fail(errTimeout)
		}
	}
}

// call sends cmd for shard to target and waits for its response in resp.
func (t *RaftNet) call(shard uint32, target raft.ServerAddress, cmd, resp any) error {
	p, err := t.peer(string(target))
	if err != nil {
		return err
	}
	cc, err := p.conn()
	if err != nil {
		return err
	}
	cl := &call{resp: resp, ch: make(chan error, 1)}
	if err := cc.send(shard, cmd, cl); err != nil {
		return err
	}
	return <-cl.ch
}

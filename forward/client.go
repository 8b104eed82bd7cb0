// Package forward carries requests between tally nodes: a node that is
// not the leader of a shard sends the request to the node that is, over
// the cluster transport. Every request queued for one peer shares one
// frame, so a forwarded increment costs a few dozen bytes, not an HTTP
// request. There is one typed request and response per operation
// (messages.go); Serve answers them through the receiver's Local.
package forward

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"tally/shard"
)

// ErrNotSent says a forwarded request never left this node: safe to retry.
var ErrNotSent = errors.New("forward: request not sent")

// ErrNoShard: the receiving node hosts no replica of the shard a request
// named (its sender's route was stale). Nothing was done.
var ErrNoShard = errors.New("no local replica of that shard")

// DialFunc opens a forwarding connection to a peer's cluster address.
type DialFunc func(addr string, timeout time.Duration) (net.Conn, error)

// Client keeps one multiplexed connection per peer and batches every
// request queued for a peer into one frame.
type Client struct {
	dial DialFunc
	log  *slog.Logger

	mu    sync.Mutex
	peers map[string]*peer
}

// NewClient returns a client that dials peers with dial.
func NewClient(dial DialFunc, log *slog.Logger) *Client {
	return &Client{dial: dial, log: log, peers: map[string]*peer{}}
}

// call is one request in flight.
type call struct {
	budget time.Duration // how long the sender will wait; the server stops trying after it
	req    request
	done   chan reply
}

// reply is a call's answer: a response of the request's own type, or err.
type reply struct {
	resp response
	err  error
}

type peer struct {
	addr  string
	conn  net.Conn
	sendq chan *call
	quit  chan struct{}

	mu      sync.Mutex
	pending map[uint64]*call
	nextID  uint64
	dead    bool
}

// Write forwards ops to the node at addr. Errors: ErrNotSent (nothing left
// this node), *shard.NotLeaderError, shard.ErrUnavailable,
// shard.ErrKeysFull, or shard.ErrOutcomeUnknown.
func (c *Client) Write(ctx context.Context, addr string, req WriteRequest) (WriteResponse, error) {
	r, err := c.do(ctx, addr, &req)
	if err != nil {
		return WriteResponse{}, err
	}
	return *r.(*WriteResponse), nil
}

// Read forwards a read. A read changes nothing, so an unknown outcome is
// reported as unavailable.
func (c *Client) Read(ctx context.Context, addr string, req ReadRequest) (ReadResponse, error) {
	r, err := c.do(ctx, addr, &req)
	if err != nil {
		return ReadResponse{}, readOnly(err)
	}
	return *r.(*ReadResponse), nil
}

// Member forwards a membership question; like Read, it changes nothing.
func (c *Client) Member(ctx context.Context, addr string, req MemberRequest) (MemberResponse, error) {
	r, err := c.do(ctx, addr, &req)
	if err != nil {
		return MemberResponse{}, readOnly(err)
	}
	return *r.(*MemberResponse), nil
}

// Card forwards a question for an actor set's size; like Read, it changes
// nothing.
func (c *Client) Card(ctx context.Context, addr string, req CardRequest) (CardResponse, error) {
	r, err := c.do(ctx, addr, &req)
	if err != nil {
		return CardResponse{}, readOnly(err)
	}
	return *r.(*CardResponse), nil
}

// Split asks the leader of a counter's home shard to raise its split
// factor. The protocol is idempotent, so an unknown outcome is safe to
// retry.
func (c *Client) Split(ctx context.Context, addr string, req SplitRequest) (SplitResponse, error) {
	r, err := c.do(ctx, addr, &req)
	if err != nil {
		return SplitResponse{}, err
	}
	return *r.(*SplitResponse), nil
}

// Replica asks the node at addr which incarnation of node id it knows.
func (c *Client) Replica(ctx context.Context, addr string, id string) (string, error) {
	r, err := c.do(ctx, addr, &ReplicaRequest{ID: id})
	if err != nil {
		return "", err
	}
	return r.(*ReplicaResponse).Incarnation, nil
}

func readOnly(err error) error {
	if errors.Is(err, shard.ErrOutcomeUnknown) {
		return shard.ErrUnavailable
	}
	return err
}

func (c *Client) do(ctx context.Context, addr string, req request) (response, error) {
	if ctx.Err() != nil {
		return nil, ErrNotSent
	}
	p, err := c.peer(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotSent, err)
	}
	cl := &call{req: req, done: make(chan reply, 1), budget: maxBudget}
	if dl, ok := ctx.Deadline(); ok {
		cl.budget = min(time.Until(dl), maxBudget)
	}
	select {
	case <-p.quit: // checked first: a dead peer's queue is never drained again
		return nil, ErrNotSent
	default:
	}
	select {
	case p.sendq <- cl:
	case <-p.quit:
		return nil, ErrNotSent
	case <-ctx.Done():
		return nil, ErrNotSent
	}
	select {
	case r := <-cl.done:
		return r.resp, r.err
	case <-ctx.Done():
		// The request may be on the wire or applied by now.
		return nil, shard.ErrOutcomeUnknown
	}
}

func (c *Client) peer(ctx context.Context, addr string) (*peer, error) {
	c.mu.Lock()
	p := c.peers[addr]
	c.mu.Unlock()
	if p != nil {
		return p, nil
	}
	timeout := 2 * time.Second
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return nil, context.DeadlineExceeded
		}
	}
	conn, err := c.dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if old := c.peers[addr]; old != nil {
		c.mu.Unlock()
		conn.Close()
		return old, nil
	}
	p = &peer{addr: addr, conn: conn, sendq: make(chan *call, 4096), quit: make(chan struct{}), pending: map[uint64]*call{}}
	c.peers[addr] = p
	c.mu.Unlock()
	go c.sendLoop(p)
	go c.recvLoop(p)
	return p, nil
}

// drop forgets a broken peer and fails its calls: those already sent with
// an unknown outcome, those still queued as not sent.
func (c *Client) drop(p *peer, cause error) {
	c.mu.Lock()
	if c.peers[p.addr] == p {
		delete(c.peers, p.addr)
	}
	c.mu.Unlock()
	p.mu.Lock()
	if p.dead {
		p.mu.Unlock()
		return
	}
	p.dead = true
	pending := p.pending
	p.pending = nil
	p.mu.Unlock()
	close(p.quit)
	p.conn.Close()
	c.log.Debug("forward connection closed", "peer", p.addr, "err", cause)
	for _, cl := range pending {
		cl.done <- reply{err: shard.ErrOutcomeUnknown}
	}
	for {
		select {
		case cl := <-p.sendq:
			cl.done <- reply{err: ErrNotSent}
		default:
			return
		}
	}
}

// Close drops every peer connection; calls in flight fail.
func (c *Client) Close() {
	c.mu.Lock()
	peers := make([]*peer, 0, len(c.peers))
	for _, p := range c.peers {
		peers = append(peers, p)
	}
	c.mu.Unlock()
	for _, p := range peers {
		c.drop(p, errors.New("closing"))
	}
}

func (c *Client) sendLoop(p *peer) {
	var e enc
	var batch []*call
	w := bufio.NewWriterSize(p.conn, 64<<10)
	for {
		batch = batch[:0]
		select {
		case cl := <-p.sendq:
			batch = append(batch, cl)
		case <-p.quit:
			return
		}
	drain:
		for len(batch) < 1024 {
			select {
			case cl := <-p.sendq:
				batch = append(batch, cl)
			default:
				break drain
			}
		}
		p.mu.Lock()
		if p.dead {
			p.mu.Unlock()
			for _, cl := range batch {
				cl.done <- reply{err: ErrNotSent}
			}
			return
		}
		startFrame(&e, frameRequests, len(batch))
		for _, cl := range batch {
			p.nextID++
			p.pending[p.nextID] = cl
			encodeRequest(&e, p.nextID, cl)
		}
		p.mu.Unlock()
		if _, err := w.Write(finishFrame(&e)); err != nil {
			c.drop(p, err)
			return
		}
		if err := w.Flush(); err != nil {
			c.drop(p, err)
			return
		}
	}
}

func (c *Client) recvLoop(p *peer) {
	r := bufio.NewReaderSize(p.conn, 64<<10)
	var buf []byte
	for {
		var err error
		buf, err = readFrame(r, buf)
		if err != nil {
			c.drop(p, err)
			return
		}
		d := dec{B: buf}
		if d.U8() != frameResponses {
			c.drop(p, errBadFrame)
			return
		}
		n := d.Count()
		for i := 0; i < n && d.Err == nil; i++ {
			id := d.Uv()
			p.mu.Lock()
			cl := p.pending[id]
			delete(p.pending, id)
			p.mu.Unlock()
			if cl == nil {
				c.drop(p, fmt.Errorf("forward: response for unknown request %d", id))
				return
			}
			res := decodeReply(&d, cl.req)
			if d.Err != nil {
				// Put it back so drop reports it as unknown.
				p.mu.Lock()
				if p.pending != nil {
					p.pending[id] = cl
				}
				p.mu.Unlock()
				break
			}
			cl.done <- res
		}
		if d.Err != nil {
			c.drop(p, d.Err)
			return
		}
	}
}

// maxBudget caps how long a forwarded request may run on the leader,
// whatever the sender asks.
const maxBudget = 10 * time.Second

func encodeRequest(e *enc, id uint64, cl *call) {
	e.Uv(id)
	e.U8(cl.req.kind())
	e.Uv(uint64(cl.req.shardID()))
	e.Uv(uint64(max(cl.budget, time.Millisecond) / time.Millisecond))
	cl.req.encode(e)
}

// decodeReply reads one response: a status, then on success the body of
// the response type req asks for.
func decodeReply(d *dec, req request) reply {
	switch d.U8() {
	case statusOK:
		resp := req.newResponse()
		resp.decode(d)
		return reply{resp: resp}
	case statusNotLeader:
		id, addr := d.Str(), d.Str()
		return reply{err: &shard.NotLeaderError{LeaderID: id, LeaderAddr: addr}}
	case statusUnavailable:
		return reply{err: fmt.Errorf("%w: %s", shard.ErrUnavailable, d.Str())}
	case statusUnknown:
		d.Str()
		return reply{err: shard.ErrOutcomeUnknown}
	case statusKeysFull:
		d.Str()
		return reply{err: shard.ErrKeysFull}
	case statusError:
		return reply{err: fmt.Errorf("forwarded request failed: %s", d.Str())}
	default:
		d.Fail()
		return reply{}
	}
}

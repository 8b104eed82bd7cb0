package node

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"tally/fsm"
	"tally/shard"
)

// errNotSent says a forwarded request never left this node: safe to retry.
var errNotSent = errors.New("forward: request not sent")

// localHandler serves requests forwarded to this node. It must not
// forward them again: a node that is not the leader answers NotLeader
// with its hint, and the sender retries.
type localHandler interface {
	localWrite(ctx context.Context, shard uint32, ops []fsm.Op) ([]fsm.Result, error)
	localRead(ctx context.Context, shard uint32, names []string, linearizable bool) ([]shard.Lookup, error)
	localMember(ctx context.Context, shard uint32, name, actor string, linearizable bool) (bool, error)
	localSplit(ctx context.Context, shard uint32, name string, k int) (int, fsm.Code, error)
}

type dialFunc func(addr string, timeout time.Duration) (net.Conn, error)

// forwarder keeps one multiplexed connection per peer and batches every
// request queued for a peer into one frame.
type forwarder struct {
	dial dialFunc
	log  *slog.Logger

	mu    sync.Mutex
	peers map[string]*peer
}

func newForwarder(dial dialFunc, log *slog.Logger) *forwarder {
	return &forwarder{dial: dial, log: log, peers: map[string]*peer{}}
}

type call struct {
	budget time.Duration // how long the sender will wait; the server stops trying after it
	kind   uint8
	shard  uint32
	ops    []fsm.Op
	names  []string // reqRead; reqMember: [name, actor]; reqSplit: [name]
	linear bool
	k      int // reqSplit: the factor
	done   chan callResult
}

type callResult struct {
	results []fsm.Result
	values  []shard.Lookup
	member  bool
	split   int      // reqSplit: the factor after it
	code    fsm.Code // reqSplit: a refusal
	err     error
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

// write forwards ops for shard to the node at addr. Errors: errNotSent
// (nothing left this node), *shard.NotLeaderError, shard.ErrUnavailable,
// or shard.ErrOutcomeUnknown.
func (f *forwarder) write(ctx context.Context, addr string, sh uint32, ops []fsm.Op) ([]fsm.Result, error) {
	res, err := f.do(ctx, addr, &call{kind: reqWrite, shard: sh, ops: ops})
	return res.results, err
}

func (f *forwarder) read(ctx context.Context, addr string, sh uint32, names []string, linear bool) ([]shard.Lookup, error) {
	res, err := f.do(ctx, addr, &call{kind: reqRead, shard: sh, names: names, linear: linear})
	if errors.Is(err, shard.ErrOutcomeUnknown) {
		err = shard.ErrUnavailable // a read changes nothing
	}
	return res.values, err
}

func (f *forwarder) member(ctx context.Context, addr string, sh uint32, name, actor string, linear bool) (bool, error) {
	res, err := f.do(ctx, addr, &call{kind: reqMember, shard: sh, names: []string{name, actor}, linear: linear})
	if errors.Is(err, shard.ErrOutcomeUnknown) {
		err = shard.ErrUnavailable
	}
	return res.member, err
}

// split asks the leader of a counter's home shard to raise its split
// factor to k. The protocol is idempotent, so an unknown outcome is safe
// to retry.
func (f *forwarder) split(ctx context.Context, addr string, sh uint32, name string, k int) (int, fsm.Code, error) {
	res, err := f.do(ctx, addr, &call{kind: reqSplit, shard: sh, names: []string{name}, k: k})
	return res.split, res.code, err
}

func (f *forwarder) do(ctx context.Context, addr string, c *call) (callResult, error) {
	if ctx.Err() != nil {
		return callResult{}, errNotSent
	}
	p, err := f.peer(ctx, addr)
	if err != nil {
		return callResult{}, fmt.Errorf("%w: %v", errNotSent, err)
	}
	c.done = make(chan callResult, 1)
	c.budget = maxForwardBudget
	if dl, ok := ctx.Deadline(); ok {
		c.budget = min(time.Until(dl), maxForwardBudget)
	}
	select {
	case <-p.quit: // checked first: a dead peer's queue is never drained again
		return callResult{}, errNotSent
	default:
	}
	select {
	case p.sendq <- c:
	case <-p.quit:
		return callResult{}, errNotSent
	case <-ctx.Done():
		return callResult{}, errNotSent
	}
	select {
	case r := <-c.done:
		return r, r.err
	case <-ctx.Done():
		// The request may be on the wire or applied by now.
		return callResult{}, shard.ErrOutcomeUnknown
	}
}

func (f *forwarder) peer(ctx context.Context, addr string) (*peer, error) {
	f.mu.Lock()
	p := f.peers[addr]
	f.mu.Unlock()
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
	conn, err := f.dial(addr, timeout)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	if old := f.peers[addr]; old != nil {
		f.mu.Unlock()
		conn.Close()
		return old, nil
	}
	p = &peer{addr: addr, conn: conn, sendq: make(chan *call, 4096), quit: make(chan struct{}), pending: map[uint64]*call{}}
	f.peers[addr] = p
	f.mu.Unlock()
	go f.sendLoop(p)
	go f.recvLoop(p)
	return p, nil
}

// drop forgets a broken peer and fails its calls: those already sent with
// an unknown outcome, those still queued as not sent.
func (f *forwarder) drop(p *peer, cause error) {
	f.mu.Lock()
	if f.peers[p.addr] == p {
		delete(f.peers, p.addr)
	}
	f.mu.Unlock()
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
	f.log.Debug("forward connection closed", "peer", p.addr, "err", cause)
	for _, c := range pending {
		c.done <- callResult{err: shard.ErrOutcomeUnknown}
	}
	for {
		select {
		case c := <-p.sendq:
			c.done <- callResult{err: errNotSent}
		default:
			return
		}
	}
}

func (f *forwarder) close() {
	f.mu.Lock()
	peers := make([]*peer, 0, len(f.peers))
	for _, p := range f.peers {
		peers = append(peers, p)
	}
	f.mu.Unlock()
	for _, p := range peers {
		f.drop(p, errors.New("closing"))
	}
}

func (f *forwarder) sendLoop(p *peer) {
	var e enc
	var batch []*call
	w := bufio.NewWriterSize(p.conn, 64<<10)
	for {
		batch = batch[:0]
		select {
		case c := <-p.sendq:
			batch = append(batch, c)
		case <-p.quit:
			return
		}
	drain:
		for len(batch) < 1024 {
			select {
			case c := <-p.sendq:
				batch = append(batch, c)
			default:
				break drain
			}
		}
		p.mu.Lock()
		if p.dead {
			p.mu.Unlock()
			for _, c := range batch {
				c.done <- callResult{err: errNotSent}
			}
			return
		}
		e.startFrame(frameRequests, len(batch))
		for _, c := range batch {
			p.nextID++
			p.pending[p.nextID] = c
			encodeRequest(&e, p.nextID, c)
		}
		p.mu.Unlock()
		if _, err := w.Write(e.finishFrame()); err != nil {
			f.drop(p, err)
			return
		}
		if err := w.Flush(); err != nil {
			f.drop(p, err)
			return
		}
	}
}

func (f *forwarder) recvLoop(p *peer) {
	r := bufio.NewReaderSize(p.conn, 64<<10)
	var buf []byte
	for {
		var err error
		buf, err = readFrame(r, buf)
		if err != nil {
			f.drop(p, err)
			return
		}
		d := dec{b: buf}
		if d.u8() != frameResponses {
			f.drop(p, errBadFrame)
			return
		}
		n := d.count()
		for i := 0; i < n && d.err == nil; i++ {
			id := d.uv()
			p.mu.Lock()
			c := p.pending[id]
			delete(p.pending, id)
			p.mu.Unlock()
			if c == nil {
				f.drop(p, fmt.Errorf("forward: response for unknown request %d", id))
				return
			}
			res := decodeResponse(&d, c.kind)
			if d.err != nil {
				// Put it back so drop reports it as unknown.
				p.mu.Lock()
				if p.pending != nil {
					p.pending[id] = c
				}
				p.mu.Unlock()
				break
			}
			c.done <- res
		}
		if d.err != nil {
			f.drop(p, d.err)
			return
		}
	}
}

// maxForwardBudget caps how long a forwarded request may run on the
// leader, whatever the sender asks.
const maxForwardBudget = 10 * time.Second

func encodeRequest(e *enc, id uint64, c *call) {
	e.uv(id)
	e.u8(c.kind)
	e.uv(uint64(c.shard))
	e.uv(uint64(max(c.budget, time.Millisecond) / time.Millisecond))
	switch c.kind {
	case reqWrite:
		// The ops travel in the fsm's own entry encoding (time unset: the
		// leader stamps its own when it proposes).
		e.bytes(fsm.AppendEntry(nil, &fsm.Entry{Ops: c.ops}))
	case reqRead, reqMember:
		e.u8(b2u(c.linear))
		e.uv(uint64(len(c.names)))
		for _, n := range c.names {
			e.str(n)
		}
	case reqSplit:
		e.str(c.names[0])
		e.uv(uint64(c.k))
	}
}

func decodeResponse(d *dec, kind uint8) callResult {
	switch d.u8() {
	case statusOK:
		switch kind {
		case reqWrite:
			n := d.count()
			res := make([]fsm.Result, n)
			for i := range res {
				res[i].Value = d.v()
				res[i].Code = fsm.Code(d.u8())
				res[i].Changed = d.u8() == 1
				res[i].ExpiresAt = d.v()
				res[i].Split = uint16(d.uv())
			}
			return callResult{results: res}
		case reqMember:
			return callResult{member: d.u8() == 1}
		case reqSplit:
			return callResult{split: int(d.uv()), code: fsm.Code(d.u8())}
		}
		n := d.count()
		vals := make([]shard.Lookup, n)
		for i := range vals {
			vals[i].Value = d.v()
			vals[i].ExpiresAt = d.v()
			vals[i].Split = int(d.uv())
		}
		return callResult{values: vals}
	case statusNotLeader:
		id, addr := d.str(), d.str()
		return callResult{err: &shard.NotLeaderError{LeaderID: id, LeaderAddr: addr}}
	case statusUnavailable:
		return callResult{err: fmt.Errorf("%w: %s", shard.ErrUnavailable, d.str())}
	case statusUnknown:
		d.str()
		return callResult{err: shard.ErrOutcomeUnknown}
	case statusError:
		return callResult{err: fmt.Errorf("forwarded request failed: %s", d.str())}
	default:
		d.fail()
		return callResult{}
	}
}

// serveForward answers forwarded requests on every connection l accepts.
func serveForward(l net.Listener, h localHandler, log *slog.Logger) {
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		go serveForwardConn(conn, h, log)
	}
}

type response struct {
	id   uint64
	kind uint8
	res  callResult
}

func serveForwardConn(conn net.Conn, h localHandler, log *slog.Logger) {
	defer conn.Close()
	out := make(chan response, 4096)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		writeResponses(conn, out, quit)
	}()
	r := bufio.NewReaderSize(conn, 64<<10)
	var buf []byte
	for {
		var err error
		buf, err = readFrame(r, buf)
		if err != nil {
			break
		}
		d := dec{b: buf}
		if d.u8() != frameRequests {
			log.Debug("forward: bad frame type")
			break
		}
		n := d.count()
		bad := false
		for i := 0; i < n; i++ {
			id := d.uv()
			kind := d.u8()
			sh := uint32(d.uv())
			// The sender's remaining patience: work it will no longer wait
			// for (and already reported as unknown) is not started late.
			budget := min(time.Duration(d.uv())*time.Millisecond, maxForwardBudget)
			var ops []fsm.Op
			var names []string
			var linear bool
			var k int
			switch kind {
			case reqWrite:
				raw := d.raw()
				if d.err == nil {
					e, err := fsm.DecodeEntry(raw)
					if err != nil {
						d.fail()
					}
					ops = e.Ops
				}
			case reqRead, reqMember:
				linear = d.u8() == 1
				k := d.count()
				names = make([]string, 0, k)
				for j := 0; j < k; j++ {
					names = append(names, d.str())
				}
				if kind == reqMember && len(names) != 2 {
					d.fail()
				}
			case reqSplit:
				names = []string{d.str()}
				k = int(d.uv())
			default:
				d.fail()
			}
			if d.err != nil {
				bad = true
				break
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), budget)
				defer cancel()
				var res callResult
				switch kind {
				case reqWrite:
					res.results, res.err = h.localWrite(ctx, sh, ops)
				case reqRead:
					res.values, res.err = h.localRead(ctx, sh, names, linear)
				case reqMember:
					res.member, res.err = h.localMember(ctx, sh, names[0], names[1], linear)
				case reqSplit:
					res.split, res.code, res.err = h.localSplit(ctx, sh, names[0], k)
				}
				select {
				case out <- response{id: id, kind: kind, res: res}:
				case <-quit:
				}
			}()
		}
		if bad {
			log.Debug("forward: malformed request frame")
			break
		}
	}
	close(quit)
	conn.Close()
	wg.Wait()
	<-writerDone
}

func writeResponses(conn net.Conn, out <-chan response, quit <-chan struct{}) {
	w := bufio.NewWriterSize(conn, 64<<10)
	var e enc
	var batch []response
	for {
		batch = batch[:0]
		select {
		case r := <-out:
			batch = append(batch, r)
		case <-quit:
			return
		}
	drain:
		for len(batch) < 1024 {
			select {
			case r := <-out:
				batch = append(batch, r)
			default:
				break drain
			}
		}
		e.startFrame(frameResponses, len(batch))
		for _, r := range batch {
			e.uv(r.id)
			encodeResult(&e, r.kind, r.res)
		}
		if _, err := w.Write(e.finishFrame()); err != nil {
			conn.Close() // unblocks the reader, which then ends the connection
			return
		}
		if err := w.Flush(); err != nil {
			conn.Close()
			return
		}
	}
}

func encodeResult(e *enc, kind uint8, r callResult) {
	if r.err != nil {
		if nl, ok := shard.IsNotLeader(r.err); ok {
			e.u8(statusNotLeader)
			e.str(nl.LeaderID)
			e.str(nl.LeaderAddr)
			return
		}
		switch {
		case errors.Is(r.err, shard.ErrOutcomeUnknown):
			e.u8(statusUnknown)
		case errors.Is(r.err, shard.ErrUnavailable), errors.Is(r.err, shard.ErrClosed), errors.Is(r.err, errNoShard):
			e.u8(statusUnavailable)
		default:
			e.u8(statusError)
		}
		e.str(r.err.Error())
		return
	}
	e.u8(statusOK)
	switch kind {
	case reqWrite:
		e.uv(uint64(len(r.results)))
		for _, x := range r.results {
			e.v(x.Value)
			e.u8(uint8(x.Code))
			e.u8(b2u(x.Changed))
			e.v(x.ExpiresAt)
			e.uv(uint64(x.Split))
		}
	case reqMember:
		e.u8(b2u(r.member))
	case reqSplit:
		e.uv(uint64(r.split))
		e.u8(uint8(r.code))
	default:
		e.uv(uint64(len(r.values)))
		for _, v := range r.values {
			e.v(v.Value)
			e.v(v.ExpiresAt)
			e.uv(uint64(v.Split))
		}
	}
}

func b2u(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

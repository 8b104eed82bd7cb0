// Package transport gives each tally node a single TCP listener that carries
// the Raft traffic of every shard the node hosts plus node-to-node request
// forwarding, and a fault-injection switch that lets chaos tests cut a node
// off from chosen peers without root (no iptables).
//
// Every connection starts with a small header written by the dialer (see
// header.go) naming the kind of traffic, the shard, and the dialer's
// advertised address. The accepting Mux reads it and hands the connection to
// the listener registered for (kind, shard).
//
// Raft traffic goes either through one NetworkTransport per shard over
// StreamLayer (one pool of connections per shard and peer), or through the
// node's RaftNet (RaftTransport: one connection per peer for every shard,
// a binary codec, coalesced writes; raftnet.go).
package transport

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// defaultHeaderTimeout bounds how long an accepted connection may take to
// send its header, so a silent or slow client cannot pin a goroutine.
const defaultHeaderTimeout = 5 * time.Second

// maxPending bounds the accepted connections that have not yet finished
// their TLS handshake and header: past it, new connections are closed at
// once, so a flood of silent or garbage connections cannot pin memory.
const maxPending = 1024

// maxPendingPerHost bounds them per remote host too, so that one host
// flooding the port cannot crowd out the handshakes of real peers.
const maxPendingPerHost = 64

// TLS is what the Mux needs to speak mutual TLS with other nodes
// (*tlsconf.Store is one): each side presents a certificate the other
// verifies, and the handshake completes before the header is read.
type TLS interface {
	PeerServerConfig() *tls.Config
	PeerClientConfig(host string) *tls.Config
}

// ErrBlocked is returned by dials to a peer that fault injection has blocked.
var ErrBlocked = errors.New("transport: peer blocked by fault injection")

// key selects the listener an accepted connection is handed to.
type key struct {
	kind  Kind
	shard uint32
}

// Mux owns the node's single TCP listener and dispatches each accepted connection, by a small header
// the dialer writes first, to the listener registered for (kind, shard).
type Mux struct {
	ln            net.Listener
	addr          string // advertised
	logger        *slog.Logger
	faults        *Faults // nil unless enabled
	headerTimeout time.Duration
	tls           TLS        // nil: plaintext
	pendingMu     sync.Mutex // guards the two below
	pending       int        // accepted connections in their handshake
	pendingByHost map[string]int

	done      chan struct{} // closed by Close; unblocks Accept and hand-offs
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup // accept loop and per-connection handshakes

	raftNetMu sync.Mutex
	raftNet   *RaftNet // made by the first RaftTransport call

	mu        sync.Mutex // guards everything below, and Faults.blocked
	closed    bool
	listeners map[key]*listener
	conns     map[*conn]struct{} // every live accepted or dialed connection
}

// Listen binds bindAddr (e.g. "127.0.0.1:0" in tests) and starts accepting. advertise is the address
// other nodes dial (if empty, the bound address is used — so ":0" in tests works). faults=true enables fault injection.
func Listen(bindAddr, advertise string, faults bool, logger *slog.Logger) (*Mux, error) {
	return listenTLS(bindAddr, advertise, faults, logger, defaultHeaderTimeout, nil)
}

// ListenTLS is Listen with mutual TLS on every connection, accepted and
// dialed; a peer that fails the handshake is closed before anything it
// sent is read as tally's protocol.
func ListenTLS(bindAddr, advertise string, faults bool, logger *slog.Logger, sec TLS) (*Mux, error) {
	return listenTLS(bindAddr, advertise, faults, logger, defaultHeaderTimeout, sec)
}

// listen is Listen with a configurable header timeout, so tests need not
// wait five seconds to watch a silent connection get dropped.
func listen(bindAddr, advertise string, faults bool, logger *slog.Logger, headerTimeout time.Duration) (*Mux, error) {
	return listenTLS(bindAddr, advertise, faults, logger, headerTimeout, nil)
}

func listenTLS(bindAddr, advertise string, faults bool, logger *slog.Logger, headerTimeout time.Duration, sec TLS) (*Mux, error) {
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s: %w", bindAddr, err)
	}
	if advertise == "" {
		advertise = ln.Addr().String()
	}
	// Peers are told this address and fault injection matches on it verbatim,
	// so reject anything that is not host:port up front.
	if _, _, err := net.SplitHostPort(advertise); err != nil || len(advertise) > maxAddrLength {
		ln.Close()
		return nil, fmt.Errorf("transport: bad advertise address %q: %v", advertise, err)
	}
	if logger == nil {
		logger = slog.Default()
	}
	m := &Mux{
		ln:            ln,
		addr:          advertise,
		logger:        logger.With("component", "transport", "addr", advertise),
		headerTimeout: headerTimeout,
		tls:           sec,
		done:          make(chan struct{}),
		listeners:     make(map[key]*listener),
		conns:         make(map[*conn]struct{}),
	}
	if faults {
		m.faults = &Faults{m: m, blocked: make(map[string]struct{})}
	}
	m.wg.Go(m.acceptLoop)
	m.logger.Info("transport listening", "bind", ln.Addr().String(), "faults", faults, "tls", sec != nil)
	return m, nil
}

// Addr returns the advertised address, "host:port".
func (m *Mux) Addr() string { return m.addr }

// Faults is nil unless Listen was called with faults=true.
func (m *Mux) Faults() *Faults { return m.faults }

// StreamLayer returns a raft.StreamLayer for one shard: Accept yields connections that dialers opened
// for (KindRaft, shard); Dial(address, timeout) dials that node's Mux and writes the header for (KindRaft, shard);
// Addr() is the advertised address (so raft.ServerAddress == Mux.Addr() for every shard on a node).
// Close closes only that shard's listener (further connections for it are refused), not the Mux.
// Use it with raft.NewNetworkTransportWithConfig / NewNetworkTransport.
//
// Calling it again for a shard whose listener is still open returns that
// same listener; after it is closed, a new one is registered.
func (m *Mux) StreamLayer(shard uint32) raft.StreamLayer {
	return &streamLayer{listener: m.register(key{KindRaft, shard})}
}

// RaftTransport returns shard's raft.Transport on the Mux's RaftNet (made,
// with the default RaftNetConfig, on first use; Close closes it): every
// shard's raft traffic to one peer shares one connection. Use it as
// shard.Config.Transport. Like StreamLayer, it returns the shard's open
// transport if there is one, else a new one.
func (m *Mux) RaftTransport(shard uint32) *ShardTransport {
	m.raftNetMu.Lock()
	if m.raftNet == nil {
		m.raftNet = NewRaftNet(m, RaftNetConfig{})
		m.mu.Lock()
		closed := m.closed
		m.mu.Unlock()
		if closed { // Close has run and will not close it: its transports come closed
			m.raftNet.Close()
		}
	}
	rn := m.raftNet
	m.raftNetMu.Unlock()
	return rn.Shard(shard)
}

// ForwardListener returns a net.Listener for forwarded-request connections
// (KindForward). Like StreamLayer, it returns the open listener if one exists.
func (m *Mux) ForwardListener() net.Listener {
	return m.register(key{KindForward, 0})
}

// DialForward opens a KindForward connection to the node whose Mux advertises addr.
func (m *Mux) DialForward(addr string, timeout time.Duration) (net.Conn, error) {
	return m.dial(addr, key{KindForward, 0}, timeout)
}

// Probe opens a connection to the Mux advertising addr, completes the
// TLS handshake (verifying the peer's certificate, when the Mux has TLS)
// and closes it without sending a header.
func (m *Mux) Probe(addr string, timeout time.Duration) error {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer nc.Close()
	if m.tls == nil {
		return nil
	}
	host, _, _ := net.SplitHostPort(addr)
	tc := tls.Client(nc, m.tls.PeerClientConfig(host))
	tc.SetDeadline(time.Now().Add(timeout))
	return tc.Handshake()
}

// Close stops accepting, closes all listeners and every connection it
// accepted or dialed, and waits for its goroutines to exit.
func (m *Mux) Close() error {
	m.closeOnce.Do(func() {
		m.raftNetMu.Lock()
		rn := m.raftNet
		m.raftNetMu.Unlock()
		if rn != nil {
			rn.Close()
		}
		m.mu.Lock()
		m.closed = true
		conns := m.takeConnsLocked(func(*conn) bool { return true })
		m.listeners = make(map[key]*listener)
		m.mu.Unlock()

		// done unblocks Accept on every listener and any handshake waiting to
		// hand a connection over; closing ln ends the accept loop.
		close(m.done)
		m.closeErr = m.ln.Close()
		for _, c := range conns {
			c.Close()
		}
		m.wg.Wait()
		m.logger.Info("transport closed")
	})
	return m.closeErr
}

// register returns the open listener for k, creating it if needed. On a
// closed Mux the listener it returns is already closed.
func (m *Mux) register(k key) *listener {
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.listeners[k]; ok {
		return l
	}
	l := &listener{m: m, key: k, ch: make(chan net.Conn), done: make(chan struct{})}
	if m.closed {
		l.closeOnce.Do(func() { close(l.done) })
		return l
	}
	m.listeners[k] = l
	return l
}

func (m *Mux) unregister(l *listener) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.listeners[l.key] == l {
		delete(m.listeners, l.key)
	}
}

// dial connects to the Mux advertising addr and writes the header for k.
func (m *Mux) dial(addr string, k key, timeout time.Duration) (net.Conn, error) {
	m.mu.Lock()
	closed, blocked := m.closed, m.blockedLocked(addr)
	m.mu.Unlock()
	if closed {
		return nil, net.ErrClosed
	}
	if blocked {
		return nil, fmt.Errorf("transport: dial %s: %w", addr, ErrBlocked)
	}

	hdr, err := header{kind: k.kind, shard: k.shard, addr: m.addr}.marshal()
	if err != nil {
		return nil, err
	}
	if timeout <= 0 {
		// raft always passes a timeout; never let a careless caller hang forever.
		timeout = m.headerTimeout
	}
	deadline := time.Now().Add(timeout)
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	if m.tls != nil {
		host, _, _ := net.SplitHostPort(addr)
		tc := tls.Client(nc, m.tls.PeerClientConfig(host))
		tc.SetDeadline(deadline)
		if err := tc.Handshake(); err != nil {
			nc.Close()
			return nil, fmt.Errorf("transport: TLS handshake with %s: %w", addr, err)
		}
		tc.SetDeadline(time.Time{})
		nc = tc
	}
	// The header must not be able to block forever if the peer stops reading.
	nc.SetWriteDeadline(deadline)
	if _, err := nc.Write(hdr); err != nil {
		nc.Close()
		return nil, fmt.Errorf("transport: write header to %s: %w", addr, err)
	}
	nc.SetWriteDeadline(time.Time{})

	c := &conn{Conn: nc, m: m}
	// Re-check under the lock that tracks the conn: Close or Block may have
	// run while we were dialing, and must not miss this connection.
	m.mu.Lock()
	switch {
	case m.closed:
		err = net.ErrClosed
	case m.blockedLocked(addr):
		err = fmt.Errorf("transport: dial %s: %w", addr, ErrBlocked)
	default:
		c.peer = addr
		m.conns[c] = struct{}{}
	}
	m.mu.Unlock()
	if err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

func (m *Mux) acceptLoop() {
	const maxDelay = time.Second
	var delay time.Duration
	for {
		nc, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.done:
				return
			default:
			}
			// Anything else (e.g. out of file descriptors) is likely transient:
			// back off rather than spin or give up on the node's only listener.
			delay = min(max(2*delay, 5*time.Millisecond), maxDelay)
			m.logger.Warn("accept failed", "err", err, "retry_in", delay)
			select {
			case <-m.done:
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		host := remoteHost(nc)
		if !m.startPending(host) {
			m.logger.Debug("dropping connection: too many handshakes under way", "remote", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		if m.tls != nil {
			nc = tls.Server(nc, m.tls.PeerServerConfig())
		}

		c := &conn{Conn: nc, m: m}
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			m.endPending(host)
			nc.Close()
			return
		}
		// Tracked before the header is read so Close also ends handshakes.
		m.conns[c] = struct{}{}
		m.mu.Unlock()

		// One goroutine per connection: a slow header, or a listener that is
		// not accepting, must not hold up connections for other shards.
		m.wg.Go(func() { m.handshake(c, host) })
	}
}

// handshake reads c's header and hands c to the matching listener.
func (m *Mux) handshake(c *conn, host string) {
	h, err := m.readPeerHeader(c)
	m.endPending(host)
	if err != nil {
		m.logger.Debug("dropping connection", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}

	k := key{h.kind, h.shard}
	m.mu.Lock()
	// Identify and check the peer under the same lock Block uses, so a Block
	// racing with this handshake either sees the peer on c or is seen here.
	blocked := m.blockedLocked(h.addr)
	if !blocked {
		c.peer = h.addr
	}
	l := m.listeners[k]
	m.mu.Unlock()

	switch {
	case blocked:
		m.logger.Debug("dropping connection from blocked peer", "peer", h.addr, "kind", h.kind, "shard", h.shard)
		c.Close()
		return
	case l == nil:
		m.logger.Debug("dropping connection: no listener", "peer", h.addr, "kind", h.kind, "shard", h.shard)
		c.Close()
		return
	}

	// Unbuffered hand-off: nothing can be stranded in a buffer when the
	// listener or Mux closes, so there is nothing to drain.
	select {
	case l.ch <- c:
	case <-l.done:
		c.Close()
	case <-m.done:
		c.Close()
	}
}

// startPending counts a connection from host into its handshake, unless
// that passes maxPending in all or maxPendingPerHost for host.
func (m *Mux) startPending(host string) bool {
	m.pendingMu.Lock()
	defer m.pendingMu.Unlock()
	if m.pending >= maxPending || m.pendingByHost[host] >= maxPendingPerHost {
		return false
	}
	if m.pendingByHost == nil {
		m.pendingByHost = map[string]int{}
	}
	m.pending++
	m.pendingByHost[host]++
	return true
}

func (m *Mux) endPending(host string) {
	m.pendingMu.Lock()
	defer m.pendingMu.Unlock()
	m.pending--
	if m.pendingByHost[host]--; m.pendingByHost[host] <= 0 {
		delete(m.pendingByHost, host)
	}
}

func remoteHost(c net.Conn) string {
	host, _, err := net.SplitHostPort(c.RemoteAddr().String())
	if err != nil {
		return c.RemoteAddr().String()
	}
	return host
}

// readPeerHeader completes the TLS handshake, if any, and reads the
// header, both within the header timeout.
func (m *Mux) readPeerHeader(c *conn) (header, error) {
	c.SetDeadline(time.Now().Add(m.headerTimeout))
	if tc, ok := c.Conn.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil {
			return header{}, fmt.Errorf("TLS handshake: %w", err)
		}
	}
	h, err := readHeader(c)
	if err != nil {
		return header{}, fmt.Errorf("bad header: %w", err)
	}
	c.SetDeadline(time.Time{})
	return h, nil
}

// takeConnsLocked removes and returns the tracked connections matching
// pick. The caller closes them after unlocking, because conn.Close locks mu.
func (m *Mux) takeConnsLocked(pick func(*conn) bool) []*conn {
	var out []*conn
	for c := range m.conns {
		if pick(c) {
			delete(m.conns, c)
			out = append(out, c)
		}
	}
	return out
}

func (m *Mux) untrack(c *conn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
}

// conn is a tracked connection: closing it removes it from the Mux.
type conn struct {
	net.Conn
	m    *Mux
	peer string // the remote node's advertised address; guarded by m.mu, "" until known

	closeOnce sync.Once
	closeErr  error
}

func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		c.m.untrack(c)
		c.closeErr = c.Conn.Close()
	})
	return c.closeErr
}

// listener receives the connections the Mux dispatches for one key.
type listener struct {
	m         *Mux
	key       key
	ch        chan net.Conn
	done      chan struct{}
	closeOnce sync.Once
}

func (l *listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
	case <-l.m.done:
	}
	return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
}

// Close unregisters the listener so further connections for its key are
// refused. Connections it already accepted stay open, as with net.Listener.
func (l *listener) Close() error {
	l.closeOnce.Do(func() {
		close(l.done)
		l.m.unregister(l)
	})
	return nil
}

func (l *listener) Addr() net.Addr { return advertisedAddr(l.m.addr) }

// streamLayer adapts a KindRaft listener to raft.StreamLayer.
type streamLayer struct {
	*listener
}

func (s *streamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return s.m.dial(string(address), s.key, timeout)
}

// advertisedAddr is a net.Addr whose String is the advertised address, which
// is what raft uses as this node's ServerAddress.
type advertisedAddr string

func (a advertisedAddr) Network() string { return "tcp" }
func (a advertisedAddr) String() string  { return string(a) }

package transport

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// RaftNetConfig tunes a RaftNet. Zero values take the defaults.
type RaftNetConfig struct {
	// Timeout bounds a dial, a write, and an RPC's wait for its response
	// (default 5 s, as the per-shard NetworkTransport had). A snapshot
	// install gets Timeout per 256 KiB of snapshot, at least Timeout.
	Timeout time.Duration
	// MaxInflight is how many AppendEntries one shard's pipeline to one
	// follower may have unanswered (default 8). 1 turns pipelining off:
	// AppendEntriesPipeline returns raft.ErrPipelineReplicationNotSupported
	// and raft replicates one request at a time.
	MaxInflight int
	// MaxFrame is the largest message, in bytes, sent or accepted (default
	// 256 MiB). raft does not bound the bytes of one AppendEntries, only its
	// entry count, so this is a sanity limit, not a tuning knob.
	MaxFrame int
}

const (
	defaultRaftTimeout     = 5 * time.Second
	defaultRaftMaxInflight = 8
	defaultMaxFrame        = 256 << 20
	// maxQueuedPerShard bounds the requests waiting for one shard's raft;
	// honest leaders never come near it (pipelines are bounded), so the
	// excess is refused rather than buffered.
	maxQueuedPerShard = 4096
	// snapshotTimeoutScale is NetworkTransport's: Timeout per this many
	// bytes of snapshot.
	snapshotTimeoutScale = 256 << 10
)

var (
	// errTimeout is an RPC that got no response within Timeout.
	errTimeout = errors.New("transport: raft rpc timed out")
	// errConnLost is an RPC whose connection failed before its response came.
	errConnLost = errors.New("transport: raft connection lost")
	// errNoShard answers a request for a shard this node has no open transport for.
	errNoShard = errors.New("transport: no such shard on this node")
	// errOverloaded refuses a request when maxQueuedPerShard are waiting.
	errOverloaded = errors.New("transport: too many requests queued for the shard")
)

// RaftNet carries the raft traffic of every shard a node hosts: one
// connection to each peer node for this node's requests (and their
// responses), whatever the shard, with every message tagged by shard and
// written through one coalescing writer per connection. Snapshot installs
// take a connection of their own each (KindSnapshot) so a long stream never
// holds up other shards. Connections go through the Mux, so the fault switch
// applies to them as to everything else.
type RaftNet struct {
	mux    *Mux
	cfg    RaftNetConfig
	logger *slog.Logger

	ln     *listener // KindRaftNet: peers' request connections
	snapLn *listener // KindSnapshot

	done chan struct{}
	wg   sync.WaitGroup

	mu      sync.Mutex // guards everything below
	closed  bool
	shards  map[uint32]*ShardTransport
	peers   map[string]*peer
	servers map[*serverConn]struct{}
}

// NewRaftNet starts a RaftNet on m. A Mux has one RaftNet at most (it
// takes the Mux's KindRaftNet and KindSnapshot connections): either this or
// the one Mux.RaftTransport makes. Close it before m (Mux.Close does so for
// the one Mux.RaftTransport made).
func NewRaftNet(m *Mux, cfg RaftNetConfig) *RaftNet {
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultRaftTimeout
	}
	if cfg.MaxInflight <= 0 {
		cfg.MaxInflight = defaultRaftMaxInflight
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = defaultMaxFrame
	}
	t := &RaftNet{
		mux:     m,
		cfg:     cfg,
		logger:  m.logger.With("sub", "raftnet"),
		ln:      m.register(key{KindRaftNet, 0}),
		snapLn:  m.register(key{KindSnapshot, 0}),
		done:    make(chan struct{}),
		shards:  make(map[uint32]*ShardTransport),
		peers:   make(map[string]*peer),
		servers: make(map[*serverConn]struct{}),
	}
	t.wg.Go(func() { t.accept(t.ln, t.serve) })
	t.wg.Go(func() { t.accept(t.snapLn, t.serveSnapshot) })
	return t
}

// Shard returns the raft.Transport of one shard: the open one if there is
// one, else a new one (after the old one's Close, a shard may reopen).
// On a closed RaftNet the transport returned is already closed.
func (t *RaftNet) Shard(id uint32) *ShardTransport {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st, ok := t.shards[id]; ok {
		return st
	}
	st := newShardTransport(t, id)
	if t.closed {
		st.closeLocked()
		close(st.stopped) // no dispatch goroutine to do it
		return st
	}
	t.shards[id] = st
	t.wg.Go(st.dispatch)
	return st
}

func (t *RaftNet) shard(id uint32) *ShardTransport {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.shards[id]
}

func (t *RaftNet) removeShard(st *ShardTransport) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.shards[st.id] == st {
		delete(t.shards, st.id)
	}
}

// Close stops every shard transport and connection and waits for the
// RaftNet's goroutines. RPCs in flight fail.
func (t *RaftNet) Close() error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	shards := make([]*ShardTransport, 0, len(t.shards))
	for _, st := range t.shards {
		shards = append(shards, st)
	}
	clear(t.shards)
	peers := make([]*peer, 0, len(t.peers))
	for _, p := range t.peers {
		peers = append(peers, p)
	}
	clear(t.peers)
	servers := make([]*serverConn, 0, len(t.servers))
	for s := range t.servers {
		servers = append(servers, s)
	}
	t.mu.Unlock()

	t.ln.Close()
	t.snapLn.Close()
	for _, st := range shards {
		st.Close()
	}
	for _, p := range peers {
		p.close()
	}
	for _, s := range servers {
		s.close(net.ErrClosed)
	}
	t.wg.Wait()
	return nil
}

// accept hands every connection ln accepts to serve, each on its own
// goroutine, until ln closes.
func (t *RaftNet) accept(ln *listener, serve func(*conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		t.wg.Go(func() { serve(c.(*conn)) })
	}
}

// peer returns the peer for addr, creating it on first use.
func (t *RaftNet) peer(addr string) (*peer, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return nil, raft.ErrTransportShutdown
	}
	p, ok := t.peers[addr]
	if !ok {
		p = &peer{net: t, addr: addr}
		t.peers[addr] = p
	}
	return p, nil
}

// trackServer records s so Close can end it; false if t is closed.
func (t *RaftNet) trackServer(s *serverConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.servers[s] = struct{}{}
	return true
}

func (t *RaftNet) untrackServer(s *serverConn) {
	t.mu.Lock()
	delete(t.servers, s)
	t.mu.Unlock()
}

// snapshotTimeout is NetworkTransport's deadline for a snapshot of size
// bytes: Timeout per snapshotTimeoutScale bytes, at least Timeout.
func (t *RaftNet) snapshotTimeout(size int64) time.Duration {
	return max(t.cfg.Timeout*time.Duration(size/snapshotTimeoutScale), t.cfg.Timeout)
}

func shardErr(id uint32, err error) error {
	return fmt.Errorf("shard %d: %w", id, err)
}

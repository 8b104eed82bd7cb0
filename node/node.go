// Package node is a tally cluster node: it hosts shard replicas, joins the
// gossip membership and routes every request to the shard leader (serving
// it locally when it is the leader, forwarding otherwise). Its typed
// operations (ops.go) are the protocol-neutral core that the HTTP API
// (package httpapi) and other protocol adapters call; a node serves such a
// Frontend on its HTTP listener.
package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"tally/auth"
	"tally/forward"
	"tally/fsm"
	"tally/hot"
	"tally/placement"
	"tally/raftstore"
	"tally/shard"
	"tally/tlsconf"
	"tally/transport"
)

// Config is a node's configuration (tallyd's flags).
type Config struct {
	ID         string
	DataDir    string
	HTTPAddr   string // listen address; ":0" picks a port
	RaftAddr   string // cluster transport listen address
	GossipAddr string
	// What other nodes and clients dial, when it differs from the bind
	// address (containers, NAT); "" means the bound address.
	AdvertiseHTTP   string
	AdvertiseRaft   string
	AdvertiseGossip string
	AdvertiseRESP   string
	Join            []string
	BootstrapExpect int
	Shards          int
	Replicas        int
	EnableFaults    bool
	Pprof           bool   // serve /debug/pprof on the HTTP address
	RESPAddr        string // Redis-protocol listen address; "" = no RESP listener
	DedupTTL        time.Duration
	// ChangeRetention: recent changes each replica keeps for the
	// changefeed (0: DefaultChangeRetention; negative: none).
	ChangeRetention int
	DedupMaxKeys    int64  // idempotency keys this node's replicas may remember in all; 0 = sized from memory (defaultKeyCap)
	LogStore        string // the raft log's storage kind (raftstore.KindPebble, KindBolt); "" = the default
	Logger          *slog.Logger

	// Security (all off when zero). TLS serves HTTP and RESP over TLS and
	// makes node-to-node traffic mutual TLS; GossipKeys encrypt gossip
	// (the first is primary; see package keyring); Tokens are what the
	// frontends (HTTP, RESP) ask their clients for.
	TLS          *tlsconf.Store
	Tokens       *auth.Tokens
	GossipKeys   [][]byte
	MaxHTTPConns int // open HTTP connections at most (default 10,000); more are closed at once

	// Tuning, mostly for tests; zero means the default.
	HeartbeatTimeout  time.Duration
	ElectionTimeout   time.Duration
	SnapshotThreshold uint64
	SnapshotBytes     int64         // log bytes between snapshots (shard default when 0; negative: entries only)
	BalanceInterval   time.Duration // 0: 5 s; negative: never rebalance leaders
	PlaceInterval     time.Duration // how often the coordinator places replicas; 0: 1 s; negative: never
	MaxLearners       int           // replicas catching up at once in the cluster; 0: 2
	RequestTimeout    time.Duration // per request deadline (default 5 s)

	// Automatic splitting of hot counters (see autosplit.go).
	NoAutoSplit    bool          // --auto-split=false
	SplitThreshold float64       // writes/s on one counter's home shard that make it hot (default 2000)
	SplitSustain   time.Duration // for this long (default 5 s)
	SplitTo        int           // the factor a hot counter is split to; 0: min(shards, 2 × nodes)
}

const maxShards = 64 // a node's shards are bits of one uint64 (Node.leading)

func (c *Config) setDefaults() error {
	if c.ID == "" {
		h, _ := os.Hostname()
		c.ID = h
	}
	if c.ID == "" {
		return errors.New("node id is empty")
	}
	if c.DataDir == "" {
		c.DataDir = "tally-data"
	}
	for flag, a := range map[string]string{"advertise-http": c.AdvertiseHTTP, "advertise-raft": c.AdvertiseRaft, "advertise-gossip": c.AdvertiseGossip, "advertise-resp": c.AdvertiseRESP} {
		if a == "" {
			continue
		}
		if host, port, err := net.SplitHostPort(a); err != nil || host == "" || port == "" || port == "0" {
			return fmt.Errorf("--%s %q: want host:port with a port other nodes can dial", flag, a)
		}
	}
	if c.BootstrapExpect <= 0 {
		c.BootstrapExpect = 1
	}
	if c.DedupMaxKeys <= 0 {
		c.DedupMaxKeys = defaultKeyCap()
	}
	if c.Shards <= 0 {
		c.Shards = 8
	}
	if c.Shards > maxShards {
		return fmt.Errorf("--shards %d: at most %d", c.Shards, maxShards)
	}
	if c.Replicas <= 0 {
		c.Replicas = 3
	}
	if c.ChangeRetention == 0 {
		c.ChangeRetention = DefaultChangeRetention
	}
	if c.MaxHTTPConns <= 0 {
		c.MaxHTTPConns = 10000
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.BalanceInterval == 0 {
		c.BalanceInterval = 5 * time.Second
	}
	if c.PlaceInterval == 0 {
		c.PlaceInterval = time.Second
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.SplitThreshold <= 0 {
		c.SplitThreshold = 2000
	}
	if c.SplitSustain <= 0 {
		c.SplitSustain = 5 * time.Second
	}
	if c.SplitTo < 0 || c.SplitTo == 1 || c.SplitTo > fsm.MaxSplit {
		return fmt.Errorf("split-to %d: must be 0 (automatic) or 2..%d", c.SplitTo, fsm.MaxSplit)
	}
	return nil
}

// Node is a running cluster node.
type Node struct {
	cfg     Config
	log     *slog.Logger
	mux     *transport.Mux
	ms      *membership
	fwd     *forward.Client
	metrics *metrics

	http, resp frontendOn // the client listeners; their frontends are guarded by mu

	logs *raftstore.Store // every local shard's raft log, one file

	mu    sync.RWMutex
	state *clusterState
	// incarnation names this life of the data dir (incarnation.go).
	incarnation string
	shards      map[uint32]*shard.Shard
	hostMu      sync.Mutex // serializes opening and dropping replicas at run time
	nshards     int
	scheme      placement.Scheme // key placement; set with state

	// Split counters: the factors this node knows, the shards it leads
	// (bit s set: it leads shard s; a node places unkeyed writes of a
	// split counter on a sub-counter it leads), the per-counter protocol
	// locks, and the auto-splitter's write-rate tracker and log.
	splits     splitCache
	leading    atomic.Uint64
	idHash     uint64 // a hash of the node id, for a node's own stable choices
	splitMu    sync.Mutex
	splitLocks map[string]chan struct{}
	tracker    *hot.Tracker
	splitLog   splitLog

	watches watchHub // the counters clients watch (watch.go)

	formed   atomic.Bool
	stopping atomic.Bool
	stop     chan struct{}
	wg       sync.WaitGroup
	done     chan struct{}
	doneOnce sync.Once
	formErr  atomic.Value  // error from formation, if it failed
	failed   chan struct{} // closed when formation has failed
}

// Start brings a node up: listeners first (so tests and scripts can learn
// the ports), then gossip, then cluster formation and the shard replicas
// in the background. Ready tells when it can serve; Serve attaches the
// frontend that answers clients on the HTTP listener.
func Start(cfg Config) (*Node, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return nil, err
	}
	log := cfg.Logger.With("node", cfg.ID)
	n := &Node{cfg: cfg, log: log, shards: map[uint32]*shard.Shard{}, stop: make(chan struct{}), done: make(chan struct{}), failed: make(chan struct{})}
	n.watches.ended = make(chan struct{})
	n.idHash = placement.Hash(cfg.ID)
	if !cfg.NoAutoSplit {
		n.tracker = hot.New(hot.Config{Threshold: cfg.SplitThreshold, Sustain: cfg.SplitSustain}, time.Now())
	}
	n.metrics = newMetrics(n)

	state, err := loadState(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	if n.incarnation, err = loadIncarnation(cfg.DataDir); err != nil {
		return nil, fmt.Errorf("data dir incarnation: %w", err)
	}
	n.nshards, n.scheme = cfg.Shards, placement.Slots
	if state != nil {
		n.nshards, n.scheme = state.Shards, state.Keys
	}

	var peerTLS transport.TLS // an interface: nil only when there is no TLS
	if cfg.TLS != nil {
		peerTLS = cfg.TLS
	}
	n.mux, err = transport.ListenTLS(cfg.RaftAddr, cfg.AdvertiseRaft, cfg.EnableFaults, log.With("component", "transport"), peerTLS)
	if err != nil {
		return nil, fmt.Errorf("cluster listener: %w", err)
	}
	n.fwd = forward.NewClient(n.mux.DialForward, log.With("component", "forward"))
	go forward.Serve(n.mux.ForwardListener(), forwardLocal{n}, log.With("component", "forward"))

	n.http.ln, err = net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		n.mux.Close()
		return nil, fmt.Errorf("http listener: %w", err)
	}
	n.http.ln = capConns(n.http.ln, cfg.MaxHTTPConns)
	// Before formation Keys says which placement this node would form
	// with; afterwards, the cluster's.
	self := meta{ID: cfg.ID, HTTP: or(cfg.AdvertiseHTTP, n.http.ln.Addr().String()), Raft: n.mux.Addr(), Shards: n.nshards, Keys: n.scheme, Incarnation: n.incarnation, Replicas: cfg.Replicas}
	if state != nil && state.Replicas > 0 {
		self.Replicas = state.Replicas
	}
	if cfg.RESPAddr != "" {
		if n.resp.ln, err = net.Listen("tcp", cfg.RESPAddr); err != nil {
			n.http.ln.Close()
			n.mux.Close()
			return nil, fmt.Errorf("resp listener: %w", err)
		}
		self.RESP = or(cfg.AdvertiseRESP, n.resp.ln.Addr().String())
	}
	// The bound addresses above are read before TLS wraps the listeners.
	if cfg.TLS != nil {
		n.http.ln = tls.NewListener(n.http.ln, cfg.TLS.ServerConfig())
		if n.resp.ln != nil {
			n.resp.ln = tls.NewListener(n.resp.ln, cfg.TLS.ServerConfig())
		}
	}

	if state != nil {
		self.Formed, self.Peers = true, state.Members
	}
	var verify func(name, addr string) error
	if cfg.TLS != nil {
		verify = n.verifyMember
	}
	n.ms, err = startMembership(self, cfg.GossipAddr, cfg.AdvertiseGossip, cfg.GossipKeys, verify, log)
	if err != nil {
		n.http.ln.Close()
		if n.resp.ln != nil {
			n.resp.ln.Close()
		}
		n.mux.Close()
		return nil, err
	}
	log.Info("node started", "http", self.HTTP, "resp", self.RESP, "cluster", self.Raft, "gossip", n.ms.addr(), "data_dir", cfg.DataDir)

	n.wg.Add(1)
	go n.run(state)
	return n, nil
}

// verifyMember admits a gossip member: its cluster address must pass a
// mutual TLS handshake (a certificate of the cluster's CA), and the node
// answering there must be name itself, not another node whose address a
// member without a certificate claims.
func (n *Node) verifyMember(name, addr string) error {
	if addr == "" {
		return errors.New("no cluster address in its meta")
	}
	if err := n.mux.Probe(addr, 5*time.Second); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := n.fwd.Config(ctx, addr, forward.ConfigRequest{Shard: 0, Node: name})
	if err != nil && strings.Contains(err.Error(), notMePrefix) {
		return fmt.Errorf("the node at %s is not %s: %v", addr, name, err)
	}
	return nil
}

// or is a unless it is empty, else b.
func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// fail records why the node cannot take part in the cluster and closes
// Failed.
func (n *Node) fail(what string, err error) {
	n.log.Error(what, "err", err)
	n.formErr.Store(fmt.Errorf("%s: %w", what, err))
	close(n.failed)
}

// Failed is closed when the node has given up joining the cluster
// (FormationError tells why): its process should exit.
func (n *Node) Failed() <-chan struct{} { return n.failed }

// HTTPAddr, RaftAddr and GossipAddr are the bound addresses.
func (n *Node) HTTPAddr() string   { return n.http.ln.Addr().String() }
func (n *Node) RaftAddr() string   { return n.mux.Addr() }
func (n *Node) GossipAddr() string { return n.ms.addr() }

// RESPAddr is the bound RESP address, "" without a RESP listener.
func (n *Node) RESPAddr() string {
	if n.resp.ln == nil {
		return ""
	}
	return n.resp.ln.Addr().String()
}
func (n *Node) ID() string { return n.cfg.ID }

// Faults is the transport's fault switch (nil unless EnableFaults).
func (n *Node) Faults() *transport.Faults { return n.mux.Faults() }

// SetGossipKeys replaces the gossip encryption keys (keys[0] primary),
// for a reload of --gossip-key-file; the node must have started with keys.
func (n *Node) SetGossipKeys(keys [][]byte) error { return n.ms.setKeys(keys) }

// Done is closed when the node has stopped (after Shutdown or Kill).
func (n *Node) Done() <-chan struct{} { return n.done }

// run joins the cluster, waits for formation, opens shards, then keeps
// rejoining gossip and balancing leaders until stopped.
func (n *Node) run(state *clusterState) {
	defer n.wg.Done()
	go n.joinLoop()
	if state == nil {
		var err error
		state, err = n.awaitFormation(n.stop)
		if err != nil {
			if !n.stopping.Load() {
				n.fail("cluster formation failed", err)
			}
			return
		}
		if err := saveState(n.cfg.DataDir, state); err != nil {
			n.fail("saving cluster state", err)
			return
		}
	}
	if err := n.openShards(state); err != nil {
		n.fail("opening shards", err)
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.recordIncarnations()
	}()
	n.formed.Store(true)
	n.wg.Add(1)
	go n.splitLoop()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.every(watchTick, n.pollWatches)
	}()
	if n.cfg.PlaceInterval > 0 {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.every(n.cfg.PlaceInterval, n.placeRound)
		}()
	}
	if n.cfg.BalanceInterval > 0 {
		n.every(n.cfg.BalanceInterval, n.balanceOnce)
	}
}

// every calls f every d until the node stops.
func (n *Node) every(d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
			f()
		}
	}
}

// joinLoop keeps trying the --join addresses until some member answers:
// at cluster start the others may not be listening yet.
func (n *Node) joinLoop() {
	if len(n.cfg.Join) == 0 {
		return
	}
	delay := 200 * time.Millisecond
	for {
		if k, err := n.ms.join(n.cfg.Join); err == nil && k > 0 {
			n.log.Info("joined gossip", "contacted", k)
			return
		} else if err != nil {
			n.log.Debug("gossip join failed; retrying", "err", err)
		}
		select {
		case <-n.stop:
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, 2*time.Second)
	}
}

func (n *Node) openShards(state *clusterState) error {
	state.hostedFrom(n.cfg.ID)
	n.mu.Lock()
	n.state = state
	n.nshards = state.Shards
	n.scheme = state.Keys
	n.mu.Unlock()
	if n.logs == nil {
		logs, err := raftstore.OpenDir(n.cfg.DataDir, n.cfg.LogStore)
		if err != nil {
			return fmt.Errorf("open raft log store: %w", err)
		}
		n.mu.Lock()
		n.logs = logs
		n.mu.Unlock()
	}
	hosted := slices.Clone(state.Hosted)
	// Each replica restores its snapshot as it opens, which for a large
	// shard takes a while; they share nothing, so open them side by side.
	opened := make([]*shard.Shard, len(hosted))
	errs := make([]error, len(hosted))
	var wg sync.WaitGroup
	for i, id := range hosted {
		wg.Add(1)
		go func() {
			defer wg.Done()
			opened[i], errs[i] = shard.Open(n.shardConfig(id))
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		for _, sh := range opened {
			if sh != nil {
				sh.Close()
			}
		}
		return err
	}
	for i, id := range hosted {
		sh, s := opened[i], int(id)
		n.mu.Lock()
		n.shards[id] = sh
		n.mu.Unlock()
		// The lowest id among a new shard's replicas bootstraps it, once.
		// A replica with state never does, so a restart cannot reset a
		// shard; nor does one opened later, which its leader fills.
		if !state.Bootstrapped && !sh.HasState() && len(state.Placement[s]) > 0 && state.Placement[s][0] == n.cfg.ID {
			voters := map[string]string{}
			for _, rid := range state.Placement[s] {
				voters[rid] = state.Addrs[rid]
			}
			if err := sh.Bootstrap(voters); err != nil {
				return fmt.Errorf("bootstrap shard %d: %w", s, err)
			}
			n.log.Info("bootstrapped shard", "shard", s, "voters", state.Placement[s])
		}
	}
	if !state.Bootstrapped {
		n.mu.Lock()
		state.Bootstrapped = true
		err := saveState(n.cfg.DataDir, state)
		n.mu.Unlock()
		if err != nil {
			return fmt.Errorf("saving cluster state: %w", err)
		}
	}
	n.ms.update(func(m *meta) {
		m.Formed = true
		m.Peers = state.Members
		m.Shards = state.Shards
		m.Keys = state.Keys
		m.Hosted = hosted
		if state.Replicas > 0 {
			m.Replicas = state.Replicas
		}
	})
	return nil
}

// shardConfig is the configuration of this node's replica of shard id.
func (n *Node) shardConfig(id uint32) shard.Config {
	return shard.Config{
		ID:                id,
		NodeID:            n.cfg.ID,
		Dir:               n.shardDir(id),
		Transport:         n.mux.RaftTransport(id),
		Logger:            n.log,
		DedupTTL:          n.cfg.DedupTTL,
		SnapshotThreshold: n.cfg.SnapshotThreshold,
		SnapshotBytes:     n.cfg.SnapshotBytes,
		HeartbeatTimeout:  n.cfg.HeartbeatTimeout,
		ElectionTimeout:   n.cfg.ElectionTimeout,
		ObserveBatch:      n.metrics.observeBatch,
		OnLeaderChange:    func(leader bool) { n.onLeaderChange(id, leader) },
		OnSplit:           n.splits.learn,
		AdmitKeys:         n.admitKeys,
		Logs:              n.logs,
		ChangeRetention:   max(n.cfg.ChangeRetention, 0),
	}
}

func (n *Node) shardDir(id uint32) string {
	return filepath.Join(n.cfg.DataDir, fmt.Sprintf("shard-%d", id))
}

func (n *Node) onLeaderChange(s uint32, leader bool) {
	n.mu.RLock()
	sh := n.shards[s]
	n.mu.RUnlock()
	var term uint64
	if sh != nil {
		term = sh.Term()
	}
	for {
		old := n.leading.Load()
		mask := old &^ (1 << s)
		if leader {
			mask |= 1 << s
		}
		if n.leading.CompareAndSwap(old, mask) {
			break
		}
	}
	n.ms.update(func(m *meta) {
		if m.Leading == nil {
			m.Leading = map[uint32]uint64{}
		}
		if leader {
			m.Leading[s] = term
		} else {
			delete(m.Leading, s)
		}
	})
}

// Ready reports whether the node can serve: the cluster is formed and
// every local shard replica knows a leader (a node with no replicas needs
// a route to every shard).
func (n *Node) Ready() bool {
	if !n.formed.Load() || n.stopping.Load() {
		return false
	}
	hosted := n.hostedShards()
	if len(hosted) > 0 {
		for _, sh := range hosted {
			if !sh.Ready() {
				return false
			}
		}
		return true
	}
	for s := 0; s < n.shardCount(); s++ {
		if id, _ := n.leaderOf(uint32(s)); id == "" {
			return false
		}
	}
	return true
}

// Shutdown stops the node gracefully: it hands off the shards it leads,
// drains the frontend, leaves gossip and stops raft.
func (n *Node) Shutdown(ctx context.Context) error {
	if !n.stopping.CompareAndSwap(false, true) {
		<-n.done
		return nil
	}
	n.log.Info("shutting down")
	n.watches.end()
	for _, sh := range n.hostedShards() {
		if sh.IsLeader() {
			if err := sh.TransferLeadership("", ""); err != nil {
				n.log.Warn("leadership transfer failed", "shard", sh.ID(), "err", err)
			} else {
				n.log.Info("transferred leadership", "shard", sh.ID())
			}
		}
	}
	n.snapshotForRestart(ctx)
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	for _, f := range n.takeFrontends() {
		if err := f.Shutdown(hctx); err != nil {
			n.log.Warn("frontend shutdown", "err", err)
		}
	}
	cancel()
	n.ms.shutdown(true)
	n.closeAll()
	n.log.Info("stopped")
	return nil
}

// restartSnapshotBytes: a replica that applied this much log since its
// last snapshot takes one as the node shuts down gracefully, so that the
// restart restores it rather than replaying the log (up to --snapshot-bytes
// of it per replica, which dominated a restart of large shards).
const restartSnapshotBytes = 1 << 20

// snapshotForRestart snapshots the replicas that are behind, side by side,
// while the node still serves (as a follower, its leaderships handed off).
// A node that cannot finish before ctx ends just replays more at restart.
func (n *Node) snapshotForRestart(ctx context.Context) {
	start := time.Now()
	var wg sync.WaitGroup
	for _, sh := range n.hostedShards() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sh.SnapshotIfBehind(restartSnapshotBytes); err != nil {
				n.log.Warn("snapshot before shutdown failed", "shard", sh.ID(), "err", err)
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		n.log.Info("snapshots before shutdown taken", "ms", time.Since(start).Milliseconds())
	case <-ctx.Done():
		n.log.Warn("shutting down before every snapshot was taken", "ms", time.Since(start).Milliseconds())
	}
}

// Kill stops the node abruptly, as a crash would from the cluster's point
// of view (no leadership transfer, no gossip leave); used by tests.
func (n *Node) Kill() {
	if !n.stopping.CompareAndSwap(false, true) {
		<-n.done
		return
	}
	n.closeFrontends()
	n.ms.shutdown(false)
	n.closeAll()
}

func (n *Node) closeAll() {
	n.watches.end()
	close(n.stop)
	n.wg.Wait()
	for _, sh := range n.hostedShards() {
		if err := sh.Close(); err != nil {
			n.log.Warn("closing shard", "shard", sh.ID(), "err", err)
		}
	}
	n.mu.RLock()
	logs := n.logs
	n.mu.RUnlock()
	if logs != nil {
		if err := logs.Close(); err != nil {
			n.log.Warn("closing the raft log store", "err", err)
		}
	}
	n.fwd.Close()
	n.mux.Close()
	n.closeFrontends()
	n.doneOnce.Do(func() { close(n.done) })
}

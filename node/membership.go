package node

import (
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"

	"tally/internal/codec"
	"tally/logbridge"
	"tally/placement"
)

// meta is what a node knows of a member: how to reach it (gossiped in
// memberlist's node meta, which must stay under 512 bytes), and which
// shards it hosts and leads (with the raft term, so a stale claim loses
// to a newer one). Hosted and Leading grow with the shard count, so they
// travel apart from the node meta, as a routing state (routes.go). The
// union of all members' claims is the cluster's shard → leader table.
type meta struct {
	ID      string
	HTTP    string
	Raft    string // the transport (mux) address: raft and forwarding
	Shards  int
	Formed  bool     // has joined a formed cluster (bootstrap done)
	Peers   []string // the members the cluster was formed with (set once formed)
	Hosted  []uint32
	Leading map[uint32]uint64 // shard → term
	// Fields added later travel at the end, where earlier versions stop
	// reading: a meta without them is from such a version.
	Keys placement.Scheme // the cluster's key placement ("" before slots, or before formed)
	RESP string           // the RESP listener's address; "" when off
	// Incarnation names the life of the node's data dir (incarnation.go).
	Incarnation string
	// Replicas is the replica count of the cluster the node belongs to
	// (its --replicas before formation), so a node that joins later, and
	// may coordinate placement one day, places as many as the cluster
	// was formed with. 0 from versions without it.
	Replicas int
}

// keys is the key placement a member's meta implies: one without the
// field is of a version that only knows FNV.
func (m meta) keys() placement.Scheme {
	if m.Keys == "" {
		return placement.FNV
	}
	return m.Keys
}

const metaVersion = 1

func (m meta) clone() meta {
	m.Peers = slices.Clone(m.Peers)
	m.Hosted = slices.Clone(m.Hosted)
	m.Leading = maps.Clone(m.Leading)
	return m
}

// encode is the node meta: identity and addresses. The hosted and
// leading lists of the layout's first version stay in it, empty: they
// are in the routing state now.
func (m *meta) encode() []byte {
	var e codec.Encoder
	e.U8(metaVersion)
	e.Str(m.ID)
	e.Str(m.HTTP)
	e.Str(m.Raft)
	e.Uv(uint64(m.Shards))
	if m.Formed {
		e.U8(1)
	} else {
		e.U8(0)
	}
	e.Uv(uint64(len(m.Peers)))
	for _, p := range m.Peers {
		e.Str(p)
	}
	e.Uv(0) // hosted
	e.Uv(0) // leading
	e.Str(string(m.Keys))
	e.Str(m.RESP)
	e.Str(m.Incarnation)
	e.Uv(uint64(m.Replicas))
	return e.B
}

func decodeMeta(b []byte) (meta, error) {
	d := codec.Decoder{B: b}
	var m meta
	if d.U8() != metaVersion {
		return m, fmt.Errorf("node meta: unknown version")
	}
	m.ID, m.HTTP, m.Raft = d.Str(), d.Str(), d.Str()
	m.Shards = int(d.Uv())
	m.Formed = d.U8() == 1
	n := d.Count()
	for i := 0; i < n; i++ {
		m.Peers = append(m.Peers, d.Str())
	}
	n = d.Count()
	for i := 0; i < n; i++ {
		m.Hosted = append(m.Hosted, uint32(d.Uv()))
	}
	n = d.Count()
	m.Leading = make(map[uint32]uint64, n)
	for i := 0; i < n; i++ {
		s := uint32(d.Uv())
		m.Leading[s] = d.Uv()
	}
	if len(d.B) > 0 {
		m.Keys = placement.Scheme(d.Str())
		m.RESP = d.Str()
	}
	if len(d.B) > 0 {
		m.Incarnation = d.Str()
	}
	if len(d.B) > 0 {
		m.Replicas = int(d.Uv())
	}
	if d.Err != nil {
		return meta{}, d.Err
	}
	return m, nil
}

// member is what this node knows of another (or itself).
type member struct {
	meta
	State string // alive, suspect, dead, left
}

// route is a shard leader as gossip tells it.
type route struct {
	id, raft string
	term     uint64
}

// membership wraps memberlist: it publishes this node's meta and keeps the
// table of every member's meta.
type membership struct {
	ml         *memberlist.Memberlist
	log        *slog.Logger
	gossipAddr string

	mu      sync.RWMutex
	self    meta
	members map[string]*member
	routes  map[uint32]route // shard → leader claimed with the highest term; rebuilt on every change
	// claims holds every node's routing state (routes.go) by id, the
	// newest version seen; selfVersion is this node's own.
	claims      map[string]routing
	selfVersion uint64
	bcast       *memberlist.TransmitLimitedQueue

	updates chan struct{}
	stop    chan struct{}
	wg      sync.WaitGroup
	keyring *memberlist.Keyring // nil: gossip in the clear

	// verify, when set (with TLS), must accept a member's transport
	// address (a mutual TLS handshake with it) before the member counts:
	// a node that has the gossip key but no certificate of the cluster's
	// CA is never listed, so no replica is placed on it and no request
	// routed to it. verified holds the address each member passed with;
	// checking, the members being checked.
	verify   func(name, raftAddr string) error
	verified map[string]string
	checking map[string]bool
	pending  map[string]memberlist.Node // the latest event of each member being checked, copied
}

func startMembership(self meta, gossipAddr, advertise string, keys [][]byte, verify func(name, raftAddr string) error, log *slog.Logger) (*membership, error) {
	host, port, err := splitPort(gossipAddr)
	if err != nil {
		return nil, err
	}
	advHost, advPort := host, port
	if advertise != "" {
		if advHost, advPort, err = splitPort(advertise); err != nil {
			return nil, err
		}
	}
	ms := &membership{log: log, self: self, members: map[string]*member{}, claims: map[string]routing{}, updates: make(chan struct{}, 1), stop: make(chan struct{}),
		verify: verify, verified: map[string]string{}, checking: map[string]bool{}, pending: map[string]memberlist.Node{}}
	ms.bcast = &memberlist.TransmitLimitedQueue{NumNodes: ms.numNodes, RetransmitMult: 3}
	ms.selfVersion = uint64(time.Now().UnixNano())
	c := memberlist.DefaultLocalConfig()
	c.Name = self.ID
	c.BindAddr = host
	c.BindPort = port
	c.AdvertiseAddr = advHost
	c.AdvertisePort = advPort
	c.Delegate = ms
	c.Events = ms
	c.Logger = logbridge.Std(log, "memberlist")
	if len(keys) > 0 {
		// Every message is encrypted with the primary key and must decrypt
		// with one of the ring's: a node without a key never becomes a member.
		if c.Keyring, err = memberlist.NewKeyring(keys[1:], keys[0]); err != nil {
			return nil, fmt.Errorf("gossip keys: %w", err)
		}
		ms.keyring = c.Keyring
		c.GossipVerifyIncoming, c.GossipVerifyOutgoing = true, true
	}
	// Leader claims ride on node meta; push/pull more often than the
	// default so a node that missed a broadcast converges quickly.
	c.PushPullInterval = 5 * time.Second
	ml, err := memberlist.Create(c)
	if err != nil {
		return nil, fmt.Errorf("start gossip: %w", err)
	}
	ms.ml = ml
	// LocalNode's fields change under memberlist's lock on every meta
	// update; read the bound address once, before any update can run.
	ln := ml.LocalNode()
	ms.gossipAddr = net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
	ms.wg.Add(1)
	go ms.publishLoop()
	return ms, nil
}

func splitPort(addr string) (string, int, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("gossip address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return "", 0, fmt.Errorf("gossip address %q: %w", addr, err)
	}
	return host, port, nil
}

func (ms *membership) addr() string { return ms.gossipAddr }

// admit says whether a gossip event about n may change the member table:
// the death of a member in it always may; an alive member only once its transport address has
// passed verify. Until then a check runs in the background, again every
// few seconds while it fails and n stays in gossip; once it passes, the
// member is observed anew.
func (ms *membership) admit(n *memberlist.Node, state string) bool {
	if state != "alive" {
		// A member that was never admitted is not one to mourn; a check
		// under way must not bring it back as alive.
		ms.mu.Lock()
		defer ms.mu.Unlock()
		delete(ms.verified, n.Name)
		delete(ms.pending, n.Name)
		_, known := ms.members[n.Name]
		return known
	}
	m, err := decodeMeta(n.Meta)
	if err != nil {
		return true // observe keeps what it knew, or ignores n
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.verified[n.Name] == m.Raft {
		return true
	}
	// memberlist changes the Node it hands over under its own lock: keep a copy.
	cp := *n
	cp.Meta = slices.Clone(n.Meta)
	ms.pending[n.Name] = cp
	if !ms.checking[n.Name] {
		ms.checking[n.Name] = true
		ms.wg.Add(1)
		go ms.check(n.Name)
	}
	return false
}

// check verifies member name at the address of its latest event until it
// passes, the member leaves gossip, or the node stops.
func (ms *membership) check(name string) {
	defer ms.wg.Done()
	done := func() {
		ms.mu.Lock()
		delete(ms.checking, name)
		delete(ms.pending, name)
		ms.mu.Unlock()
	}
	for warned := false; ; warned = true {
		ms.mu.Lock()
		n, ok := ms.pending[name]
		ms.mu.Unlock()
		if !ok {
			done() // it died or was admitted meanwhile
			return
		}
		raftAddr := ""
		if m, err := decodeMeta(n.Meta); err == nil {
			raftAddr = m.Raft
		}
		err := ms.verify(name, raftAddr)
		if err == nil {
			ms.mu.Lock()
			latest, ok := ms.pending[name]
			delete(ms.checking, name)
			delete(ms.pending, name)
			if ok {
				ms.verified[name] = raftAddr
			}
			ms.mu.Unlock()
			if ok {
				// If it moved meanwhile, observe checks the new address.
				ms.observe(&latest, "alive")
			}
			return
		}
		if !warned {
			ms.log.Warn("gossip member refused: its cluster address failed the mutual TLS and identity check; it takes no part until it passes", "member", name, "raft", raftAddr, "err", err)
		}
		select {
		case <-ms.stop:
			done()
			return
		case <-time.After(3 * time.Second):
		}
		alive := false
		for _, n := range ms.ml.Members() {
			alive = alive || n.Name == name // a member's name never changes; reading it does not race
		}
		if !alive {
			done()
			return
		}
	}
}

// setKeys replaces the gossip keys (a reload of the key file).
func (ms *membership) setKeys(keys [][]byte) error {
	kr := ms.keyring
	if kr == nil {
		return errors.New("gossip keys: this node started without --gossip-key-file; restart it with one")
	}
	return applyKeys(kr, keys)
}

// applyKeys makes kr hold exactly keys, with keys[0] primary, adding
// before removing so that no key the old and new sets share is missing
// for a moment.
func applyKeys(kr *memberlist.Keyring, keys [][]byte) error {
	for _, k := range keys {
		if err := kr.AddKey(k); err != nil {
			return err
		}
	}
	if err := kr.UseKey(keys[0]); err != nil {
		return err
	}
	keep := map[string]bool{}
	for _, k := range keys {
		keep[string(k)] = true
	}
	for _, k := range kr.GetKeys() {
		if !keep[string(k)] {
			if err := kr.RemoveKey(k); err != nil {
				return err
			}
		}
	}
	return nil
}

// join contacts existing members; it is fine for some to be down.
func (ms *membership) join(addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, nil
	}
	return ms.ml.Join(addrs)
}

// update changes this node's meta and gossips it.
func (ms *membership) update(f func(*meta)) {
	ms.mu.Lock()
	// Copy on write: readers hold earlier copies of self, whose maps and
	// slices must never change under them.
	m := ms.self.clone()
	f(&m)
	routesChanged := !slices.Equal(m.Hosted, ms.self.Hosted) || !maps.Equal(m.Leading, ms.self.Leading)
	ms.self = m
	if routesChanged {
		ms.publishRoutingLocked()
	}
	ms.rebuildRoutesLocked()
	ms.mu.Unlock()
	select {
	case ms.updates <- struct{}{}:
	default:
	}
}

func (ms *membership) selfMeta() meta {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	return ms.self
}

// publishLoop pushes meta changes out, coalescing bursts (a node gaining
// leadership of several shards at once sends one update).
func (ms *membership) publishLoop() {
	defer ms.wg.Done()
	for {
		select {
		case <-ms.stop:
			return
		case <-ms.updates:
			if err := ms.ml.UpdateNode(5 * time.Second); err != nil {
				ms.log.Warn("gossip meta update failed", "err", err)
			}
		}
	}
}

// snapshot returns a copy of the member table (self included, as alive).
func (ms *membership) snapshot() []member {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	out := make([]member, 0, len(ms.members)+1)
	out = append(out, member{meta: ms.self, State: "alive"})
	for id, m := range ms.members {
		if id == ms.self.ID {
			continue
		}
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// member returns what gossip says of member id.
func (ms *membership) member(id string) (member, bool) {
	ms.mu.RLock()
	defer ms.mu.RUnlock()
	m, ok := ms.members[id]
	if !ok {
		return member{}, false
	}
	return *m, true
}

// leaderOf returns the member that claims leadership of shard s with the
// highest term among live members.
func (ms *membership) leaderOf(s uint32) (id, raftAddr string, ok bool) {
	ms.mu.RLock()
	r, ok := ms.routes[s]
	ms.mu.RUnlock()
	return r.id, r.raft, ok
}

// rebuildRoutesLocked recomputes the routing table from every live
// member's claims (self included); it runs on gossip events, not per
// request. The caller holds mu.
func (ms *membership) rebuildRoutesLocked() {
	routes := map[uint32]route{}
	claim := func(m meta) {
		for s, t := range m.Leading {
			if r, ok := routes[s]; !ok || t > r.term {
				routes[s] = route{id: m.ID, raft: m.Raft, term: t}
			}
		}
	}
	claim(ms.self)
	for id, m := range ms.members {
		if id != ms.self.ID && (m.State == "alive" || m.State == "suspect") {
			claim(m.meta)
		}
	}
	ms.routes = routes
}

// shutdown stops gossip; graceful tells the others first that this node
// is leaving (instead of letting them detect a failure).
func (ms *membership) shutdown(graceful bool) {
	select {
	case <-ms.stop:
		return
	default:
	}
	close(ms.stop)
	ms.wg.Wait()
	if graceful {
		if err := ms.ml.Leave(2 * time.Second); err != nil {
			ms.log.Warn("gossip leave", "err", err)
		}
	}
	if err := ms.ml.Shutdown(); err != nil {
		ms.log.Warn("gossip shutdown", "err", err)
	}
}

// --- memberlist.Delegate ---

func (ms *membership) NodeMeta(limit int) []byte {
	m := ms.selfMeta()
	b := m.encode()
	if len(b) > limit {
		ms.log.Error("node meta exceeds gossip limit", "bytes", len(b), "limit", limit)
		return nil
	}
	return b
}

func (ms *membership) NotifyMsg(b []byte) { ms.mergeRouting(b) }
func (ms *membership) GetBroadcasts(overhead, limit int) [][]byte {
	return ms.bcast.GetBroadcasts(overhead, limit)
}
func (ms *membership) LocalState(join bool) []byte            { return ms.routingState() }
func (ms *membership) MergeRemoteState(buf []byte, join bool) { ms.mergeRouting(buf) }

// --- memberlist.EventDelegate ---

// memberlist keeps a member's state beside the Node it hands to these
// callbacks (Node.State stays at its zero value, alive), so the callback
// itself says what happened: a leave is a death or a graceful leave, and
// both end the member's claims.
func (ms *membership) NotifyJoin(n *memberlist.Node)   { ms.observe(n, "alive") }
func (ms *membership) NotifyLeave(n *memberlist.Node)  { ms.observe(n, "dead") }
func (ms *membership) NotifyUpdate(n *memberlist.Node) { ms.observe(n, "alive") }

func (ms *membership) observe(n *memberlist.Node, state string) {
	if ms.verify != nil && n.Name != ms.self.ID && !ms.admit(n, state) {
		return
	}
	m, err := decodeMeta(n.Meta)
	if err != nil {
		// Keep what we knew of it, but never miss that it died or left:
		// its leader claims must stop counting.
		ms.log.Warn("member sent bad meta; keeping its previous meta", "member", n.Name, "err", err)
		ms.mu.RLock()
		prev := ms.members[n.Name]
		ms.mu.RUnlock()
		if prev == nil {
			return
		}
		m = prev.meta
	}
	ms.mu.Lock()
	prev := ms.members[n.Name]
	if c, ok := ms.claims[n.Name]; ok {
		m.Hosted, m.Leading = c.hosted, c.leading
	}
	ms.members[n.Name] = &member{meta: m, State: state}
	ms.rebuildRoutesLocked()
	ms.mu.Unlock()
	if prev == nil || prev.State != state {
		ms.log.Info("member state", "member", n.Name, "state", state)
	}
}

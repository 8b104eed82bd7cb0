package transport

import (
	"slices"
)

// Faults cuts this node off from chosen peers (identified by their advertised
// Mux address, matched verbatim), in both directions. It works at connection
// level inside the process, so chaos tests need no root or iptables.
//
// Blocking on one side is enough for a symmetric partition: this node refuses
// to dial the peer and drops the peer's connections after reading their
// header. The peer's dial itself still succeeds at TCP level (there is no
// acknowledgement in the protocol); it sees the connection closed on first use.
type Faults struct {
	m       *Mux
	blocked map[string]struct{} // guarded by m.mu
}

// Block closes live connections to/from those peers now, refuses new dials to
// them and drops new incoming connections from them.
func (f *Faults) Block(peers ...string) {
	f.m.mu.Lock()
	for _, p := range peers {
		f.blocked[p] = struct{}{}
	}
	// Blocking and collecting happen under one lock hold; dial and handshake
	// check the block list under the same lock before they record a peer, so
	// no connection to a blocked peer can slip through.
	conns := f.m.takeConnsLocked(func(c *conn) bool {
		return c.peer != "" && slices.Contains(peers, c.peer)
	})
	f.m.mu.Unlock()

	for _, c := range conns {
		c.Close()
	}
	f.m.logger.Info("fault injection: blocked peers", "peers", peers, "closed_conns", len(conns))
}

// Unblock lets those peers connect again. Connections closed by Block stay
// closed; callers (raft, forwarding) redial.
func (f *Faults) Unblock(peers ...string) {
	f.m.mu.Lock()
	for _, p := range peers {
		delete(f.blocked, p)
	}
	f.m.mu.Unlock()
	f.m.logger.Info("fault injection: unblocked peers", "peers", peers)
}

// Heal unblocks all peers.
func (f *Faults) Heal() {
	f.m.mu.Lock()
	clear(f.blocked)
	f.m.mu.Unlock()
	f.m.logger.Info("fault injection: healed")
}

// Blocked returns the blocked peers, sorted.
func (f *Faults) Blocked() []string {
	f.m.mu.Lock()
	out := make([]string, 0, len(f.blocked))
	for p := range f.blocked {
		out = append(out, p)
	}
	f.m.mu.Unlock()
	slices.Sort(out)
	return out
}

// blockedLocked reports whether addr is blocked; the caller holds m.mu.
func (m *Mux) blockedLocked(addr string) bool {
	if m.faults == nil {
		return false
	}
	_, ok := m.faults.blocked[addr]
	return ok
}

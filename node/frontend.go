package node

import (
	"context"
	"errors"
	"net"
)

// Frontend is a protocol server that answers clients through the node's
// core (httpapi's *http.Server is one, the RESP listener another). The
// node owns the listeners and the frontends' lifetime: Shutdown drains
// them after handing off the shards this node leads (so clients are
// answered while the cluster still can) and before leaving gossip; Kill
// closes them at once.
type Frontend interface {
	Serve(l net.Listener) error
	Shutdown(ctx context.Context) error
	Close() error
}

// frontendOn is a frontend and the listener it serves.
type frontendOn struct {
	ln net.Listener
	f  Frontend // nil until attached
}

// Serve starts f on the node's HTTP listener; call it once, after Start.
// Until then, connections wait in the listener's backlog.
func (n *Node) Serve(f Frontend) { n.serveOn(&n.http, f) }

// ServeRESP starts f on the node's RESP listener (Config.RESPAddr); it
// fails if the node has none.
func (n *Node) ServeRESP(f Frontend) error {
	if n.resp.ln == nil {
		f.Close()
		return errors.New("node: no RESP listener (Config.RESPAddr is empty)")
	}
	n.serveOn(&n.resp, f)
	return nil
}

func (n *Node) serveOn(on *frontendOn, f Frontend) {
	n.mu.Lock()
	if on.f != nil || n.stopping.Load() {
		n.mu.Unlock()
		f.Close()
		return
	}
	on.f = f
	n.mu.Unlock()
	go func() {
		if err := f.Serve(on.ln); err != nil && !n.stopping.Load() {
			n.log.Error("frontend stopped serving", "addr", on.ln.Addr().String(), "err", err)
		}
	}()
}

// takeFrontends detaches the frontends for stopping, and closes the
// listeners that have none.
func (n *Node) takeFrontends() []Frontend {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Frontend
	for _, on := range []*frontendOn{&n.http, &n.resp} {
		switch {
		case on.f != nil:
			out = append(out, on.f)
			on.f = nil
		case on.ln != nil:
			on.ln.Close()
		}
	}
	return out
}

func (n *Node) closeFrontends() {
	for _, f := range n.takeFrontends() {
		f.Close()
	}
}

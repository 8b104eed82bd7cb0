package node

import (
	"context"
	"net"
)

// Frontend is a protocol server that answers clients through the node's
// core (httpapi's *http.Server is one). The node owns the listener and
// the frontend's lifetime: Shutdown drains it after handing off the
// shards this node leads (so clients are answered while the cluster still
// can) and before leaving gossip; Kill closes it at once.
type Frontend interface {
	Serve(l net.Listener) error
	Shutdown(ctx context.Context) error
	Close() error
}

// Serve starts f on the node's HTTP listener; call it once, after Start.
// Until then, connections wait in the listener's backlog.
func (n *Node) Serve(f Frontend) {
	n.mu.Lock()
	if n.frontend != nil || n.stopping.Load() {
		n.mu.Unlock()
		f.Close()
		return
	}
	n.frontend = f
	n.mu.Unlock()
	go func() {
		if err := f.Serve(n.httpLn); err != nil && !n.stopping.Load() {
			n.log.Error("frontend stopped serving", "err", err)
		}
	}()
}

// takeFrontend detaches the frontend for stopping; without one it closes
// the listener itself.
func (n *Node) takeFrontend() Frontend {
	n.mu.Lock()
	defer n.mu.Unlock()
	f := n.frontend
	n.frontend = nil
	if f == nil {
		n.httpLn.Close()
	}
	return f
}

func (n *Node) closeFrontend() {
	if f := n.takeFrontend(); f != nil {
		f.Close()
	}
}

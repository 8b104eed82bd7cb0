package node

import (
	"net"
	"sync"
	"sync/atomic"
)

// capConns returns ln limited to max open connections: past it, a new
// connection is closed as soon as it is accepted, so a flood of idle
// connections costs the clients that make them, not the node's memory,
// and cannot queue real clients behind it in the backlog (a cap that
// stops accepting, as x/net/netutil's does, would).
func capConns(ln net.Listener, max int) net.Listener {
	return &capListener{Listener: ln, max: int64(max)}
}

type capListener struct {
	net.Listener
	max  int64
	open atomic.Int64
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			c.Close()
			continue
		}
		return &cappedConn{Conn: c, l: l}, nil
	}
}

type cappedConn struct {
	net.Conn
	l    *capListener
	once sync.Once
}

func (c *cappedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.l.open.Add(-1) })
	return err
}

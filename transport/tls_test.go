package transport

import (
	"io"
	"net"
	"testing"
	"time"

	"tally/tlsconf"
)

func tlsStore(t *testing.T) *tlsconf.Store {
	t.Helper()
	f, err := tlsconf.Generate(t.TempDir(), []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s, err := tlsconf.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newTLSMux(t *testing.T, sec TLS, headerTimeout time.Duration) *Mux {
	t.Helper()
	m, err := listenTLS("127.0.0.1:0", "", false, testLogger(), headerTimeout, sec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// echoOn answers every connection ln accepts with what it was sent.
func echoOn(t *testing.T, ln net.Listener) {
	t.Helper()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
}

func TestMutualTLSCarriesForwarding(t *testing.T) {
	sec := tlsStore(t)
	a, b := newTLSMux(t, sec, defaultHeaderTimeout), newTLSMux(t, sec, defaultHeaderTimeout)
	echoOn(t, b.ForwardListener())
	c, err := a.DialForward(b.Addr(), dialTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q, %v", buf, err)
	}
}

func TestPeersOutsideTheCAAreRefused(t *testing.T) {
	sec := tlsStore(t)
	b := newTLSMux(t, sec, 2*time.Second)
	got := acceptAll(t, b.ForwardListener())

	// A node with another CA's certificate: its handshake fails both ways.
	other := newTLSMux(t, tlsStore(t), defaultHeaderTimeout)
	if c, err := other.DialForward(b.Addr(), dialTimeout); err == nil {
		c.Close()
		t.Fatal("a node of another CA dialed in")
	}
	a := newTLSMux(t, sec, defaultHeaderTimeout)
	if c, err := a.DialForward(other.Addr(), dialTimeout); err == nil {
		c.Close()
		t.Fatal("dialed a node of another CA")
	}

	// A plaintext node writes a valid header: it is never handed on.
	plain := newMux(t, false)
	if c, err := plain.DialForward(b.Addr(), dialTimeout); err == nil {
		c.SetDeadline(time.Now().Add(ioTimeout))
		c.Write([]byte("hello"))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Fatal("a plaintext peer got an answer")
		}
		c.Close()
	}

	// Raw garbage, and a connection that never speaks: both closed.
	for _, payload := range [][]byte{[]byte("GET / HTTP/1.1\r\n\r\n"), {0x16, 0x03, 0x01, 0xff, 0xff, 0, 0}, nil} {
		nc, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(ioTimeout))
		if payload != nil {
			nc.Write(payload)
		}
		if _, err := io.Copy(io.Discard, nc); err != nil {
			t.Fatalf("payload %q: the connection was not closed: %v", payload, err)
		}
		nc.Close()
	}
	select {
	case c := <-got:
		t.Fatalf("a refused peer's connection reached the listener: %v", c.RemoteAddr())
	default:
	}
	waitFor(t, waitTimeout, "refused connections untracked", func() bool { return trackedConns(b) == 0 })
}

// TestOneHostCannotFillTheHandshakes: past maxPendingPerHost silent
// connections from one host, its next connection is closed at once; once
// they are gone, connections are handed on again.
func TestOneHostCannotFillTheHandshakes(t *testing.T) {
	b := newMux(t, false)
	echoOn(t, b.ForwardListener())
	a := newMux(t, false)
	var silent []net.Conn
	for range maxPendingPerHost {
		c, err := net.Dial("tcp", b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		silent = append(silent, c)
	}
	waitFor(t, waitTimeout, "the silent connections to be pending", func() bool {
		b.pendingMu.Lock()
		defer b.pendingMu.Unlock()
		return b.pending == maxPendingPerHost
	})
	echoes := func() bool {
		c, err := a.DialForward(b.Addr(), dialTimeout)
		if err != nil {
			return false
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(ioTimeout))
		c.Write([]byte("x"))
		_, err = io.ReadFull(c, make([]byte, 1))
		return err == nil
	}
	if echoes() {
		t.Fatal("a connection past the per-host cap was served")
	}
	for _, c := range silent {
		c.Close()
	}
	waitFor(t, waitTimeout, "a connection to be served again", echoes)
}

package transport

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Generous: the suite must pass under -race on a slow 2-core machine.
const (
	waitTimeout = 30 * time.Second
	dialTimeout = 5 * time.Second
	ioTimeout   = 10 * time.Second
)

// testLogger writes to stderr, which go test only shows for failing packages
// (or with -v). It deliberately avoids t.Log: raft goroutines may log after
// a test returns.
func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func newMux(t *testing.T, faults bool) *Mux {
	t.Helper()
	return newMuxTimeout(t, faults, defaultHeaderTimeout)
}

func newMuxTimeout(t *testing.T, faults bool, headerTimeout time.Duration) *Mux {
	t.Helper()
	m, err := listen("127.0.0.1:0", "", faults, testLogger(), headerTimeout)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

func trackedConns(m *Mux) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.conns)
}

// acceptAll accepts from ln until it fails and delivers the connections on
// the returned channel. The goroutine is waited for at cleanup, after the
// caller's cleanups have closed ln (register this after newMux).
func acceptAll(t *testing.T, ln net.Listener) <-chan net.Conn {
	t.Helper()
	ch := make(chan net.Conn, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case ch <- c:
			default:
				c.Close() // the test stopped reading; don't block
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		for c := range ch {
			c.Close()
		}
	})
	return ch
}

func recvConn(t *testing.T, ch <-chan net.Conn, what string) net.Conn {
	t.Helper()
	select {
	case c, ok := <-ch:
		if !ok {
			t.Fatalf("%s: listener closed", what)
		}
		return c
	case <-time.After(waitTimeout):
		t.Fatalf("%s: no connection within %v", what, waitTimeout)
	}
	return nil
}

// echoServer echoes every connection accepted from ln. It counts accepted
// connections so tests can tell whether anything got through.
type echoServer struct {
	accepted atomic.Int64
	wg       sync.WaitGroup
}

func startEcho(t *testing.T, m *Mux, ln net.Listener) *echoServer {
	t.Helper()
	e := &echoServer{}
	e.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.accepted.Add(1)
			e.wg.Go(func() {
				defer c.Close()
				io.Copy(c, c)
			})
		}
	})
	t.Cleanup(func() {
		// Closing the Mux closes ln and every echoed connection.
		m.Close()
		e.wg.Wait()
	})
	return e
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(ioTimeout))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
}

// requireDropped asserts that the remote end closes c without sending any
// data (a timeout means it was left hanging instead).
func requireDropped(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	var b [1]byte
	n, err := c.Read(b[:])
	if err == nil || n != 0 {
		t.Fatalf("read = %d, %v; want the connection closed by the peer", n, err)
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("connection was not closed by the peer within %v", ioTimeout)
	}
}

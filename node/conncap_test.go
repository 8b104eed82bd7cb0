package node

import (
	"io"
	"net"
	"testing"
	"time"
)

// TestConnCapClosesExcessAtOnce: past the cap a connection is closed as
// soon as it is accepted, and a slot freed by a close is usable again.
func TestConnCapClosesExcessAtOnce(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := capConns(raw, 2)
	defer ln.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		return c
	}
	a, b := dial(), dial()
	defer a.Close()
	defer b.Close()
	first, second := <-accepted, <-accepted
	extra := dial()
	if _, err := io.Copy(io.Discard, extra); err != nil {
		t.Fatalf("the connection past the cap was not closed: %v", err)
	}
	extra.Close()
	first.Close()
	again := dial()
	defer again.Close()
	select {
	case c := <-accepted:
		c.Close()
	case <-time.After(10 * time.Second):
		t.Fatal("a freed slot was not given to the next connection")
	}
	second.Close()
}

package transport

import (
	"errors"
	"net"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
)

func TestFaultsDisabled(t *testing.T) {
	if f := newMux(t, false).Faults(); f != nil {
		t.Fatalf("Faults() = %v, want nil when disabled", f)
	}
	if newMux(t, true).Faults() == nil {
		t.Fatal("Faults() = nil, want non-nil when enabled")
	}
}

func TestFaultsBlock(t *testing.T) {
	a := newMux(t, true) // the node being cut off
	b := newMux(t, false)
	aEcho := startEcho(t, a, a.ForwardListener())
	startEcho(t, b, b.ForwardListener())
	aRaft := acceptAll(t, a.StreamLayer(0))
	f := a.Faults()

	dial := func(from, to *Mux) (net.Conn, error) {
		c, err := from.DialForward(to.Addr(), dialTimeout)
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
	mustDial := func(from, to *Mux) net.Conn {
		t.Helper()
		c, err := dial(from, to)
		if err != nil {
			t.Fatalf("dial %s -> %s: %v", from.Addr(), to.Addr(), err)
		}
		return c
	}

	// Established connections in both directions, of both kinds.
	bToA := mustDial(b, a)
	roundTrip(t, bToA, "b->a")
	aToB := mustDial(a, b)
	roundTrip(t, aToB, "a->b")
	bToARaft, err := b.StreamLayer(0).Dial(raft.ServerAddress(a.Addr()), dialTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer bToARaft.Close()
	recvConn(t, aRaft, "raft conn b->a").Close()
	accepted := aEcho.accepted.Load()

	const other = "10.255.255.1:7000"
	f.Block(other, b.Addr())
	if got, want := f.Blocked(), []string{"10.255.255.1:7000", b.Addr()}; !slices.Equal(got, want) {
		t.Fatalf("Blocked() = %v, want sorted %v", got, want)
	}

	// Live connections are cut now: b sees its connections closed by a; a's
	// own end is closed locally.
	requireDropped(t, bToA)
	requireDropped(t, bToARaft)
	if _, err := aToB.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on a->b after Block: %v, want net.ErrClosed", err)
	}

	// New dials from a are refused outright.
	if _, err := dial(a, b); !errors.Is(err, ErrBlocked) {
		t.Fatalf("DialForward to blocked peer: %v, want ErrBlocked", err)
	}
	if _, err := a.StreamLayer(0).Dial(raft.ServerAddress(b.Addr()), dialTimeout); !errors.Is(err, ErrBlocked) {
		t.Fatalf("StreamLayer.Dial to blocked peer: %v, want ErrBlocked", err)
	}
	// New dials from b connect at TCP level but a drops them after the header.
	c, err := dial(b, a)
	if err != nil {
		t.Fatalf("dial from blocked peer should connect and then be dropped, got %v", err)
	}
	c.Write([]byte("ping"))
	requireDropped(t, c)
	if n := aEcho.accepted.Load(); n != accepted {
		t.Fatalf("a's forward listener accepted %d new connections from a blocked peer", n-accepted)
	}

	// Unblock restores both directions; the other peer stays blocked.
	f.Unblock(b.Addr())
	if got := f.Blocked(); !slices.Equal(got, []string{other}) {
		t.Fatalf("Blocked() after Unblock = %v, want [%s]", got, other)
	}
	roundTrip(t, mustDial(b, a), "b->a again")
	roundTrip(t, mustDial(a, b), "a->b again")

	f.Heal()
	if got := f.Blocked(); len(got) != 0 {
		t.Fatalf("Blocked() after Heal = %v, want empty", got)
	}
}

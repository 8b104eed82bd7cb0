package transport

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestHeaderRoundTrip(t *testing.T) {
	in := header{kind: KindRaft, shard: 0xDEADBEEF, addr: "node-1.example:7000"}
	b, err := in.marshal()
	if err != nil {
		t.Fatal(err)
	}
	// Trailing payload must be left unread.
	r := bytes.NewReader(append(b, "payload"...))
	out, err := readHeader(r)
	if err != nil {
		t.Fatal(err)
	}
	if out != in {
		t.Fatalf("got %+v, want %+v", out, in)
	}
	if rest, _ := io.ReadAll(r); string(rest) != "payload" {
		t.Fatalf("payload after header = %q", rest)
	}

	for name, bad := range map[string][]byte{
		"magic":    {0x00, 1, 0, 0, 0, 0, 0, 1, 'x'},
		"kind":     {headerMagic, 9, 0, 0, 0, 0, 0, 1, 'x'},
		"zero len": {headerMagic, 1, 0, 0, 0, 0, 0, 0},
		"long len": {headerMagic, 1, 0, 0, 0, 0, 0xFF, 0xFF},
		"short":    {headerMagic, 1, 0, 0},
	} {
		if _, err := readHeader(bytes.NewReader(bad)); err == nil {
			t.Errorf("%s: readHeader accepted %x", name, bad)
		}
	}
	if _, err := (header{kind: KindRaft, addr: string(make([]byte, maxAddrLength+1))}).marshal(); err == nil {
		t.Error("marshal accepted an oversized address")
	}
}

func TestAddr(t *testing.T) {
	m := newMux(t, false)
	if m.Addr() != m.ln.Addr().String() {
		t.Fatalf("Addr() = %q, want bound address %q", m.Addr(), m.ln.Addr())
	}
	if got := m.StreamLayer(3).Addr().String(); got != m.Addr() {
		t.Fatalf("StreamLayer.Addr() = %q, want %q", got, m.Addr())
	}
	if got := m.ForwardListener().Addr().String(); got != m.Addr() {
		t.Fatalf("ForwardListener.Addr() = %q, want %q", got, m.Addr())
	}

	adv, err := Listen("127.0.0.1:0", "node-a.internal:7000", false, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer adv.Close()
	if adv.Addr() != "node-a.internal:7000" {
		t.Fatalf("Addr() = %q, want the advertised address", adv.Addr())
	}
	if _, err := Listen("127.0.0.1:0", "no-port", false, nil); err == nil {
		t.Fatal("Listen accepted an advertise address without a port")
	}
}

func TestHeaderDispatch(t *testing.T) {
	a := newMuxTimeout(t, false, 300*time.Millisecond)
	b := newMux(t, false)
	got0 := acceptAll(t, a.StreamLayer(0))
	got1 := acceptAll(t, a.StreamLayer(1))
	gotFwd := acceptAll(t, a.ForwardListener())

	dialRaft := func(shard uint32) net.Conn {
		t.Helper()
		c, err := b.StreamLayer(shard).Dial(raft.ServerAddress(a.Addr()), dialTimeout)
		if err != nil {
			t.Fatalf("dial shard %d: %v", shard, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// expect checks that the connection carrying msg is the one accepted from
	// ch, with the header consumed and the payload intact.
	expect := func(ch <-chan net.Conn, what, msg string) {
		t.Helper()
		c := recvConn(t, ch, what)
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(ioTimeout))
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatalf("%s: read: %v", what, err)
		}
		if string(buf) != msg {
			t.Fatalf("%s got %q, want %q: crosstalk", what, buf, msg)
		}
	}

	// Interleave shards; each connection must land on its own shard only.
	for range 3 {
		for _, shard := range []uint32{1, 0} {
			msg := []string{"zero", "one!"}[shard]
			c := dialRaft(shard)
			io.WriteString(c, msg)
			expect([]<-chan net.Conn{got0, got1}[shard], []string{"shard 0", "shard 1"}[shard], msg)
		}
	}
	fc, err := b.DialForward(a.Addr(), dialTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	io.WriteString(fc, "fwd!")
	expect(gotFwd, "forward", "fwd!")

	t.Run("unregistered shard is closed", func(t *testing.T) {
		requireDropped(t, dialRaft(7))
	})

	t.Run("closed shard is closed, reopen works", func(t *testing.T) {
		sl := a.StreamLayer(2)
		sl.Close()
		if _, err := sl.Accept(); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Accept on closed listener: %v, want net.ErrClosed", err)
		}
		requireDropped(t, dialRaft(2))

		got2 := acceptAll(t, a.StreamLayer(2))
		io.WriteString(dialRaft(2), "two!")
		expect(got2, "reopened shard 2", "two!")
	})

	t.Run("forward with nonzero shard is closed", func(t *testing.T) {
		c, err := b.dial(a.Addr(), key{KindForward, 5}, dialTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		requireDropped(t, c)
	})

	raw := func(t *testing.T, payload []byte) {
		t.Helper()
		c, err := net.DialTimeout("tcp", a.Addr(), dialTimeout)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if len(payload) > 0 {
			c.Write(payload)
		}
		requireDropped(t, c)
	}
	t.Run("garbage header is closed", func(t *testing.T) {
		raw(t, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	})
	t.Run("oversized address is closed", func(t *testing.T) {
		raw(t, []byte{headerMagic, byte(KindRaft), 0, 0, 0, 0, 0xFF, 0xFF})
	})
	t.Run("silent client is closed after header timeout", func(t *testing.T) {
		raw(t, nil)
	})

	// None of the rejected connections may have reached a listener.
	for name, ch := range map[string]<-chan net.Conn{"shard 0": got0, "shard 1": got1, "forward": gotFwd} {
		select {
		case c := <-ch:
			c.Close()
			t.Errorf("%s received an unexpected connection", name)
		default:
		}
	}
}

// A listener that nobody Accepts from must not hold up other shards.
func TestSlowListenerDoesNotBlockOthers(t *testing.T) {
	a := newMux(t, false)
	b := newMux(t, false)
	_ = a.StreamLayer(0) // registered, never accepted from
	got1 := acceptAll(t, a.StreamLayer(1))

	var conns []net.Conn
	for range 5 {
		c, err := b.StreamLayer(0).Dial(raft.ServerAddress(a.Addr()), dialTimeout)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	c, err := b.StreamLayer(1).Dial(raft.ServerAddress(a.Addr()), dialTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	recvConn(t, got1, "shard 1").Close()
	for _, c := range conns {
		c.Close()
	}
}

func TestForwardEcho(t *testing.T) {
	a := newMux(t, false)
	b := newMux(t, false)
	echo := startEcho(t, a, a.ForwardListener())

	// Several concurrent clients, each with several round trips.
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			c, err := b.DialForward(a.Addr(), dialTimeout)
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			for j := range 3 {
				roundTrip(t, c, string(rune('a'+i))+string(rune('0'+j))+"-hello")
			}
		})
	}
	wg.Wait()
	if n := echo.accepted.Load(); n != 4 {
		t.Fatalf("echo accepted %d connections, want 4", n)
	}
	// Closed connections must be untracked on both sides (no leak).
	waitFor(t, waitTimeout, "connections untracked", func() bool {
		return trackedConns(a) == 0 && trackedConns(b) == 0
	})
}

func TestClose(t *testing.T) {
	base := runtime.NumGoroutine()

	a, err := listen("127.0.0.1:0", "", false, testLogger(), defaultHeaderTimeout)
	if err != nil {
		t.Fatal(err)
	}
	b, err := listen("127.0.0.1:0", "", false, testLogger(), defaultHeaderTimeout)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait() // runs last: helper goroutines must all have exited
	defer b.Close()
	defer a.Close()

	bEcho := b.ForwardListener()
	wg.Go(func() {
		for {
			c, err := bEcho.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { io.Copy(c, c); c.Close() })
		}
	})

	// On a: a blocked Accept per listener kind, one accepted inbound
	// connection, one dialed outbound connection, one stuck in handshake.
	fl := a.ForwardListener()
	sl := a.StreamLayer(0)
	acceptErrs := make(chan error, 2)
	inbound := make(chan net.Conn, 1)
	wg.Go(func() {
		c, err := fl.Accept()
		if err != nil {
			acceptErrs <- err
			return
		}
		inbound <- c
		_, err = fl.Accept()
		acceptErrs <- err
	})
	wg.Go(func() {
		_, err := sl.Accept()
		acceptErrs <- err
	})

	in, err := b.DialForward(a.Addr(), dialTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	recvConn(t, inbound, "inbound forward")
	out, err := a.DialForward(b.Addr(), dialTimeout)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, out, "before close")
	silent, err := net.DialTimeout("tcp", a.Addr(), dialTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	waitFor(t, waitTimeout, "silent conn tracked", func() bool { return trackedConns(a) == 3 })

	if err := a.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := a.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}

	for range 2 {
		select {
		case err := <-acceptErrs:
			if !errors.Is(err, net.ErrClosed) {
				t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
			}
		case <-time.After(waitTimeout):
			t.Fatal("Accept still blocked after Close")
		}
	}
	requireDropped(t, in)
	requireDropped(t, silent)
	if _, err := out.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write on dialed conn after Close: %v, want net.ErrClosed", err)
	}
	if n := trackedConns(a); n != 0 {
		t.Fatalf("%d connections still tracked after Close", n)
	}

	if _, err := a.DialForward(b.Addr(), dialTimeout); err == nil {
		t.Fatal("DialForward from a closed Mux succeeded")
	}
	if _, err := a.StreamLayer(0).Dial(raft.ServerAddress(b.Addr()), dialTimeout); err == nil {
		t.Fatal("StreamLayer.Dial from a closed Mux succeeded")
	}
	if _, err := b.DialForward(a.Addr(), dialTimeout); err == nil {
		t.Fatal("DialForward to a closed Mux succeeded")
	}
	if _, err := a.StreamLayer(9).Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept on a listener registered after Close: %v", err)
	}

	b.Close()
	in.Close()
	silent.Close()
	wg.Wait()
	// Nothing the Muxes started may outlive them.
	deadline := time.Now().Add(waitTimeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d, baseline %d\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		<-tick.C
	}
}

// Hammer dial/accept/close/Block concurrently; the race detector and the
// tracked-connection count are the assertions.
func TestConcurrentChurn(t *testing.T) {
	a := newMux(t, true)
	b := newMux(t, false)
	startEcho(t, a, a.ForwardListener())
	startEcho(t, b, b.ForwardListener())

	stop := make(chan struct{})
	var ok atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	stopWorkers := func() { once.Do(func() { close(stop); wg.Wait() }) }
	defer stopWorkers() // also on t.Fatal
	for i := range 4 {
		wg.Go(func() {
			from, to := a, b
			if i%2 == 1 {
				from, to = b, a
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := from.DialForward(to.Addr(), dialTimeout)
				if err != nil {
					continue // blocked, or dropped mid-dial
				}
				c.SetDeadline(time.Now().Add(ioTimeout))
				c.Write([]byte("x"))
				var buf [1]byte
				if n, _ := c.Read(buf[:]); n == 1 {
					ok.Add(1)
				} // else blocked or cut by Block; that's fine
				c.Close()
			}
		})
	}
	// Keep toggling until plenty of round trips got through between blocks.
	waitFor(t, waitTimeout, "round trips during churn", func() bool {
		a.Faults().Block(b.Addr())
		runtime.Gosched()
		a.Faults().Unblock(b.Addr())
		return ok.Load() >= 200
	})
	stopWorkers()

	waitFor(t, waitTimeout, "connections untracked", func() bool {
		return trackedConns(a) == 0 && trackedConns(b) == 0
	})
}

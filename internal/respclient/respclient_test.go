package respclient

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

// pipe is a Conn over net.Pipe and the server's end.
func pipe(t *testing.T, lim Limits) (*Conn, net.Conn) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	return NewConn(a, lim), b
}

// serve reads one command off the server end, checks it is want, and
// answers reply; it reports what went wrong on the returned channel.
func serve(srv net.Conn, want []string, reply string) <-chan error {
	done := make(chan error, 1)
	go func() {
		cmd := AppendCommand(nil, want...)
		got := make([]byte, len(cmd))
		if _, err := io.ReadFull(srv, got); err != nil {
			done <- err
			return
		}
		if string(got) != string(cmd) {
			done <- errors.New("server got " + string(got))
			return
		}
		_, err := srv.Write([]byte(reply))
		done <- err
	}()
	return done
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestAppendCommand(t *testing.T) {
	got := string(AppendCommand(nil, "TALLY.INCRBY", "k", "-3", "IDEMPOTENCY", "", "a\r\nb"))
	want := "*6\r\n$12\r\nTALLY.INCRBY\r\n$1\r\nk\r\n$2\r\n-3\r\n$11\r\nIDEMPOTENCY\r\n$0\r\n\r\n$4\r\na\r\nb\r\n"
	if got != want {
		t.Fatalf("AppendCommand = %q, want %q", got, want)
	}
}

func TestReplies(t *testing.T) {
	cases := []struct {
		name, wire string
		want       Reply
	}{
		{"simple", "+OK\r\n", Reply{Kind: SimpleString, Str: "OK"}},
		{"integer", ":42\r\n", Reply{Kind: Integer, Int: 42}},
		{"negative integer", ":-9223372036854775808\r\n", Reply{Kind: Integer, Int: -1 << 63}},
		{"bulk", "$2\r\n42\r\n", Reply{Kind: Bulk, Str: "42"}},
		{"bulk with CRLF inside", "$4\r\na\r\nb\r\n", Reply{Kind: Bulk, Str: "a\r\nb"}},
		{"empty bulk", "$0\r\n\r\n", Reply{Kind: Bulk, Str: ""}},
		{"nil bulk", "$-1\r\n", Reply{Kind: Bulk, Nil: true}},
		{"nil array", "*-1\r\n", Reply{Kind: Array, Nil: true}},
		{"empty array", "*0\r\n", Reply{Kind: Array, Elems: []Reply{}}},
		{"nested array", "*3\r\n:1\r\n*2\r\n$1\r\na\r\n$-1\r\n-ERR inside\r\n", Reply{Kind: Array, Elems: []Reply{
			{Kind: Integer, Int: 1},
			{Kind: Array, Elems: []Reply{{Kind: Bulk, Str: "a"}, {Kind: Bulk, Nil: true}}},
			{Kind: ErrorElem, Str: "ERR inside"},
		}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, srv := pipe(t, Limits{})
			done := serve(srv, []string{"GET", "k"}, tc.wire)
			got, err := c.Do(ctxFor(t, 5*time.Second), "GET", "k")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// An error reply is the call's error, and the connection goes on.
func TestServerErrorKeepsConnection(t *testing.T) {
	c, srv := pipe(t, Limits{})
	ctx := ctxFor(t, 5*time.Second)
	done := serve(srv, []string{"INCR", "k"}, "-TRYAGAIN no leader right now\r\n")
	_, err := c.Do(ctx, "INCR", "k")
	var se ServerError
	if !errors.As(err, &se) || se.Code() != "TRYAGAIN" || se.Error() != "TRYAGAIN no leader right now" {
		t.Fatalf("err = %v (%T), want the TRYAGAIN reply", err, err)
	}
	<-done
	done = serve(srv, []string{"INCR", "k"}, ":1\r\n")
	if r, err := c.Do(ctx, "INCR", "k"); err != nil || r.Int != 1 {
		t.Fatalf("after an error reply: %+v, %v", r, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// Malformed replies and replies past the limits are protocol errors after
// the command was sent, and end the connection.
func TestBadReplies(t *testing.T) {
	lim := Limits{MaxLine: 16, MaxBulk: 8, MaxArray: 3, MaxDepth: 2}
	cases := []struct{ name, wire string }{
		{"bulk past the limit", "$9\r\n123456789\r\n"},
		{"array past the limit", "*4\r\n:1\r\n:2\r\n:3\r\n:4\r\n"},
		{"line past the limit", "+" + strings.Repeat("x", 17) + "\r\n"},
		{"too deep", "*1\r\n*1\r\n*1\r\n:1\r\n"},
		{"bad integer", ":12x\r\n"},
		{"bad bulk length", "$-2\r\n"},
		{"bulk without CRLF", "$2\r\n42xx"},
		{"LF alone", ":1\n"},
		{"empty line", "\r\n"},
		{"RESP3 map", "%1\r\n+a\r\n:1\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, srv := pipe(t, lim)
			serve(srv, []string{"GET", "k"}, tc.wire)
			_, err := c.Do(ctxFor(t, 5*time.Second), "GET", "k")
			var ce *ConnError
			var pe *ProtocolError
			if !errors.As(err, &ce) || !ce.Sent || !errors.As(err, &pe) {
				t.Fatalf("err = %v, want a protocol error after sending", err)
			}
			_, err = c.Do(ctxFor(t, 5*time.Second), "GET", "k")
			if !errors.As(err, &ce) || ce.Sent || !errors.Is(err, ErrClosed) {
				t.Fatalf("a call after a protocol error: %v, want ErrClosed, not sent", err)
			}
		})
	}
}

// The server reads the command and never answers: the deadline ends the
// call, which may have run (sent), and the connection is closed so a late
// reply cannot be taken for the next command's.
func TestDeadlineAfterSending(t *testing.T) {
	c, srv := pipe(t, Limits{})
	go io.Copy(io.Discard, srv)
	start := time.Now()
	_, err := c.Do(ctxFor(t, 100*time.Millisecond), "INCR", "k")
	var ce *ConnError
	if !errors.As(err, &ce) || !ce.Sent || !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("err = %v, want a deadline after sending", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("the deadline took %v", time.Since(start))
	}
	if !c.closed {
		t.Fatal("the connection is still open after a timed-out call")
	}
}

// Canceling the ctx cuts a call short that has no deadline.
func TestCancel(t *testing.T) {
	c, srv := pipe(t, Limits{})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		buf := make([]byte, 1)
		io.ReadFull(srv, buf) // the command is on its way
		cancel()
		io.Copy(io.Discard, srv)
	}()
	_, err := c.Do(ctx, "INCR", "k")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want canceled", err)
	}
}

// A command the server never took whole was not sent: net.Pipe's writes
// wait for the reader, so a server that reads nothing times the write out.
func TestNotSent(t *testing.T) {
	t.Run("write times out", func(t *testing.T) {
		c, _ := pipe(t, Limits{})
		_, err := c.Do(ctxFor(t, 50*time.Millisecond), "INCR", "k")
		var ce *ConnError
		if !errors.As(err, &ce) || ce.Sent {
			t.Fatalf("err = %v, want not sent", err)
		}
	})
	t.Run("peer gone", func(t *testing.T) {
		c, srv := pipe(t, Limits{})
		srv.Close()
		_, err := c.Do(ctxFor(t, 5*time.Second), "INCR", "k")
		var ce *ConnError
		if !errors.As(err, &ce) || ce.Sent {
			t.Fatalf("err = %v, want not sent", err)
		}
	})
	t.Run("ctx over", func(t *testing.T) {
		c, _ := pipe(t, Limits{})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.Do(ctx, "INCR", "k")
		var ce *ConnError
		if !errors.As(err, &ce) || ce.Sent || !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want canceled, not sent", err)
		}
	})
}

// Over a real socket: dialing, a reply, and a server that closes after
// reading the command (EOF after sending: the command may have run).
func TestDialAndEOF(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				cmd := AppendCommand(nil, "PING")
				buf := make([]byte, len(cmd))
				if _, err := io.ReadFull(nc, buf); err != nil {
					return
				}
				nc.Write([]byte("+PONG\r\n"))
				io.ReadFull(nc, buf) // the second command: hang up without answering
			}()
		}
	}()
	ctx := ctxFor(t, 5*time.Second)
	c, err := Dial(ctx, l.Addr().String(), time.Second, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if r, err := c.Do(ctx, "PING"); err != nil || r.Kind != SimpleString || r.Str != "PONG" {
		t.Fatalf("PING: %+v, %v", r, err)
	}
	_, err = c.Do(ctx, "PING")
	var ce *ConnError
	if !errors.As(err, &ce) || !ce.Sent || !errors.Is(err, io.EOF) {
		t.Fatalf("err = %v, want EOF after sending", err)
	}

	// A port nobody listens on: the dial fails, nothing was sent.
	l2, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l2.Addr().String()
	l2.Close()
	_, err = Dial(ctx, addr, time.Second, Limits{})
	if !errors.As(err, &ce) || ce.Sent {
		t.Fatalf("dial to a closed port: %v, want a ConnError, not sent", err)
	}
}

package resp

import (
	"bufio"
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tally/auth"
)

func authServer(t *testing.T, b Core) *Server {
	t.Helper()
	tokens, err := auth.Parse([]byte("read-token-0123456789 read\nwrite-token-0123456789 write\n"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveTest(t, ln, Config{Core: b, NodeID: "n1", Tokens: tokens})
}

// TestAuthInRedisWords: one pipeline that tries everything before and
// after AUTH gets Redis's own errors, in order, and only the commands
// its token allows run.
func TestAuthInRedisWords(t *testing.T) {
	mem := newMem()
	s := authServer(t, mem)
	nc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	send := strings.Join([]string{
		"INCR a", "GET a", "PING", "HELLO 3", "NOSUCH x",
		"AUTH wrong-token-0123456789", "INCR a",
		"AUTH read-token-0123456789", "INCR a", "GET a", "PING",
		"AUTH someone write-token-0123456789", "INCR a", "INCR a", "GET a",
		"AUTH a b c", "QUIT",
	}, "\r\n") + "\r\n"
	if _, err := nc.Write([]byte(send)); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"-NOAUTH Authentication required.", "-NOAUTH Authentication required.", "-NOAUTH Authentication required.",
		"-" + errHelloAuth, "-ERR unknown command 'NOSUCH', with args beginning with: 'x' ",
		"-" + errWrongPass, "-NOAUTH Authentication required.",
		"+OK", "-NOPERM this token has no permissions to run the 'incr' command", "$1", "0", "+PONG",
		"+OK", ":1", ":2", "$1", "2",
		"-ERR syntax error", "+OK",
	}
	rd := bufio.NewReader(nc)
	for i, w := range want {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if got := strings.TrimRight(line, "\r\n"); got != w {
			t.Fatalf("reply %d = %q, want %q", i, got, w)
		}
	}
	if got := mem.addCalls(); len(got) != 1 || got[0] != 2 {
		t.Fatalf("adds reached the core as %v, want one batch of the two authorised INCRs", got)
	}
}

func TestGoRedisAuthenticates(t *testing.T) {
	s := authServer(t, newMem())
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		c := redis.NewClient(&redis.Options{Addr: s.Addr().String(), Protocol: proto, Password: "write-token-0123456789", MaxRetries: -1})
		if v, err := c.Incr(ctx, "a").Result(); err != nil || v < 1 {
			t.Fatalf("RESP%d INCR with a write token: %d %v", proto, v, err)
		}
		c.Close()
		c = redis.NewClient(&redis.Options{Addr: s.Addr().String(), Protocol: proto, Password: "wrong-token-0123456789", MaxRetries: -1})
		if err := c.Ping(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
			t.Fatalf("RESP%d with a wrong token: %v", proto, err)
		}
		c.Close()
	}
}

// TestUnauthenticatedConnectionsDoNotHoldSlots: connections that never
// authenticate are closed after AuthTimeout, so they cannot keep real
// clients out once they fill the connection cap.
func TestUnauthenticatedConnectionsDoNotHoldSlots(t *testing.T) {
	tokens, err := auth.Parse([]byte("write-token-0123456789 write\n"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := serveTest(t, ln, Config{Core: newMem(), NodeID: "n1", Tokens: tokens, MaxConns: 2, AuthTimeout: 300 * time.Millisecond})
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if i == 1 {
			c.Write([]byte("*2\r\n$4\r\nINCR\r\n$65536\r\n")) // half a command
		}
	}
	ctx := context.Background()
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := redis.NewClient(&redis.Options{Addr: s.Addr().String(), Password: "write-token-0123456789", MaxRetries: -1})
		err := c.Incr(ctx, "a").Err()
		c.Close()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("a real client never got a slot: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

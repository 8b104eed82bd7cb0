package resp

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tally/node"
)

// memBackend is an in-memory Core that records how adds arrive.
type memBackend struct {
	mu     sync.Mutex
	vals   map[string]int64
	calls  []int // adds per AddBatch call
	keys   map[string]int64
	failAs *node.Error // every add fails with it, when set

	expiry     map[string]time.Time
	sets       map[string]map[string]bool
	split      map[string]bool // split counters: SET and EXPIRE refuse them
	actorCalls [][]string      // the members of each Actors call
}

func newMem() *memBackend {
	return &memBackend{vals: map[string]int64{}, keys: map[string]int64{}, expiry: map[string]time.Time{},
		sets: map[string]map[string]bool{}, split: map[string]bool{}}
}

func (m *memBackend) AddBatch(ctx context.Context, reqs []node.AddRequest) ([]node.AddOutcome, error) {
	for _, r := range reqs {
		if r.Name == "" {
			return nil, &node.Error{Code: node.CodeBadName, Message: "a counter name must not be empty"}
		}
	}
	m.mu.Lock()
	m.calls = append(m.calls, len(reqs))
	m.mu.Unlock()
	out := make([]node.AddOutcome, len(reqs))
	for i, r := range reqs {
		res, err := m.add(r)
		out[i].Result = res
		if err != nil {
			out[i].Err = err.(*node.Error)
		}
	}
	return out, nil
}

func (m *memBackend) Add(_ context.Context, r node.AddRequest) (node.AddResult, error) {
	if r.Name == "" {
		return node.AddResult{}, &node.Error{Code: node.CodeBadName, Message: "a counter name must not be empty"}
	}
	res, err := m.add(r)
	if err != nil {
		return res, err
	}
	return res, nil
}

func (m *memBackend) add(a node.AddRequest) (node.AddResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expireNow(a.Name)
	if m.failAs != nil {
		return node.AddResult{}, m.failAs
	}
	if a.IdempotencyKey != "" {
		if v, ok := m.keys[a.IdempotencyKey]; ok {
			return node.AddResult{Value: v, Exact: true}, nil
		}
	}
	v := m.vals[a.Name] + a.Delta
	if (a.HasMin && v < a.Min) || (a.HasMax && v > a.Max) {
		return node.AddResult{}, &node.Error{Code: node.CodeOutOfBounds, Message: "out of bounds", Value: m.vals[a.Name], HasValue: true}
	}
	m.vals[a.Name] = v
	if a.IdempotencyKey != "" {
		m.keys[a.IdempotencyKey] = v
	}
	return node.AddResult{Value: v, Exact: true}, nil
}

func (m *memBackend) ReadMany(_ context.Context, names []string, _ node.Consistency) ([]node.ReadResult, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]node.ReadResult, len(names))
	for i, n := range names {
		m.expireNow(n)
		out[i] = node.ReadResult{Name: n, Value: m.vals[n], Split: 1, ExpiresAt: m.expiry[n]}
		if m.split[n] {
			out[i].Split = 2
		}
	}
	return out, nil
}

func (m *memBackend) addCalls() []int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]int(nil), m.calls...)
}

func startServer(t *testing.T, b Core, lim Limits) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveTest(t, ln, Config{Core: b, Limits: lim, NodeID: "n1"})
}

// serveTest serves cfg on ln until the test ends, and returns once the
// server has its listener.
func serveTest(t *testing.T, ln net.Listener, cfg Config) *Server {
	t.Helper()
	s := New(cfg)
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	deadline := time.Now().Add(10 * time.Second)
	for s.Addr() == nil {
		if time.Now().After(deadline) {
			t.Fatal("server never took its listener")
		}
		time.Sleep(time.Millisecond)
	}
	return s
}

func client(t *testing.T, s *Server, proto int) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr().String(), Protocol: proto, MaxRetries: -1})
	t.Cleanup(func() { c.Close() })
	return c
}

func TestGoRedisCounterCommands(t *testing.T) {
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			s := startServer(t, newMem(), Limits{})
			c := client(t, s, proto)
			ctx := context.Background()
			if v, err := c.Ping(ctx).Result(); err != nil || v != "PONG" {
				t.Fatalf("PING: %q %v", v, err)
			}
			if v, err := c.Incr(ctx, "a").Result(); err != nil || v != 1 {
				t.Fatalf("INCR: %d %v", v, err)
			}
			if v, err := c.IncrBy(ctx, "a", 41).Result(); err != nil || v != 42 {
				t.Fatalf("INCRBY: %d %v", v, err)
			}
			if v, err := c.DecrBy(ctx, "a", 2).Result(); err != nil || v != 40 {
				t.Fatalf("DECRBY: %d %v", v, err)
			}
			if v, err := c.Decr(ctx, "a").Result(); err != nil || v != 39 {
				t.Fatalf("DECR: %d %v", v, err)
			}
			if v, err := c.Get(ctx, "a").Int64(); err != nil || v != 39 {
				t.Fatalf("GET: %d %v", v, err)
			}
			if v, err := c.MGet(ctx, "a", "none").Result(); err != nil || fmt.Sprint(v) != "[39 0]" {
				t.Fatalf("MGET: %v %v", v, err)
			}
			if v, err := c.Exists(ctx, "a", "none", "a").Result(); err != nil || v != 2 {
				t.Fatalf("EXISTS: %d %v", v, err)
			}
			if v, err := c.Echo(ctx, "hi").Result(); err != nil || v != "hi" {
				t.Fatalf("ECHO: %q %v", v, err)
			}
			if err := c.Do(ctx, "SELECT", "0").Err(); err != nil {
				t.Fatalf("SELECT 0: %v", err)
			}
			if err := c.Do(ctx, "SELECT", "1").Err(); err == nil || err.Error() != "ERR DB index is out of range" {
				t.Fatalf("SELECT 1: %v", err)
			}
			if err := c.Do(ctx, "INCRBY", "a", "x").Err(); err == nil || err.Error() != errNotInteger {
				t.Fatalf("INCRBY a x: %v", err)
			}
			if err := c.Do(ctx, "INCRBY", "a", "99999999999999999999").Err(); err == nil || err.Error() != errNotInteger {
				t.Fatalf("INCRBY out of range: %v", err)
			}
			if err := c.Do(ctx, "INCR").Err(); err == nil || err.Error() != "ERR wrong number of arguments for 'incr' command" {
				t.Fatalf("INCR without key: %v", err)
			}
			if err := c.Do(ctx, "FLUSHALL").Err(); err == nil || !strings.HasPrefix(err.Error(), "ERR unknown command 'FLUSHALL'") {
				t.Fatalf("FLUSHALL: %v", err)
			}
			if v, err := c.Get(ctx, "a").Int64(); err != nil || v != 39 {
				t.Fatalf("refused commands changed the counter: %d %v", v, err)
			}
		})
	}
}

func TestTallyIncrBy(t *testing.T) {
	s := startServer(t, newMem(), Limits{})
	c := client(t, s, 2)
	ctx := context.Background()
	if v, err := c.Do(ctx, "TALLY.INCRBY", "stock", "3", "MAX", "3").Int64(); err != nil || v != 3 {
		t.Fatalf("%d %v", v, err)
	}
	err := c.Do(ctx, "TALLY.INCRBY", "stock", "1", "MAX", "3").Err()
	if err == nil || err.Error() != "OUTOFBOUNDS 3 the result would leave the bounds; nothing changed" {
		t.Fatalf("over the bound: %v", err)
	}
	// A retry with the same id returns the first result, not a second count.
	for range 2 {
		if v, err := c.Do(ctx, "TALLY.INCRBY", "views", "1", "IDEMPOTENCY", "req-1").Int64(); err != nil || v != 1 {
			t.Fatalf("keyed: %d %v", v, err)
		}
	}
	for _, bad := range [][]any{
		{"TALLY.INCRBY", "k", "1", "MAX"},
		{"TALLY.INCRBY", "k", "1", "BOGUS", "1"},
		{"TALLY.INCRBY", "k", "1", "PX", "0"},
		{"TALLY.INCRBY", "k", "1", "MIN", "x"},
	} {
		if err := c.Do(ctx, bad...).Err(); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestBackendErrorsInTheirOwnWords(t *testing.T) {
	m := newMem()
	s := startServer(t, m, Limits{})
	c := client(t, s, 2)
	ctx := context.Background()
	for code, want := range map[node.Code]string{
		node.CodeOutcomeUnknown: "UNKNOWN ",
		node.CodeNoLeader:       "TRYAGAIN ",
		node.CodeOverflow:       errOverflow,
		node.CodeKeyReused:      "KEYREUSED ",
		node.CodeKeysFull:       "OOM ",
		node.CodeBadName:        "ERR x",
	} {
		m.mu.Lock()
		m.failAs = &node.Error{Code: code, Message: "x"}
		m.mu.Unlock()
		if err := c.Incr(ctx, "a").Err(); err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Errorf("%s: %v, want %q...", code, err, want)
		}
	}
}

// A pipeline of increments is one backend call, and every reply keeps its
// place.
func TestPipelineIsOneBackendCall(t *testing.T) {
	m := newMem()
	s := startServer(t, m, Limits{})
	nc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var req strings.Builder
	for i := range 100 {
		if i == 50 {
			req.WriteString("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")
		}
		req.WriteString("*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n")
	}
	if _, err := io.WriteString(nc, req.String()); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(nc)
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := 1; i <= 101; i++ {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if i == 51 { // the GET: a bulk of the value after 50 increments
			if line != "$2\r\n" {
				t.Fatalf("reply %d = %q, want the GET's bulk", i, line)
			}
			if v, _ := br.ReadString('\n'); v != "50\r\n" {
				t.Fatalf("GET after 50 INCRs = %q", v)
			}
			continue
		}
		want := fmt.Sprintf(":%d\r\n", i)
		if i > 51 {
			want = fmt.Sprintf(":%d\r\n", i-1)
		}
		if line != want {
			t.Fatalf("reply %d = %q, want %q", i, line, want)
		}
	}
	calls := m.addCalls()
	// The 100 increments came as at most a few reads, split around the GET:
	// far fewer backend calls than commands.
	if len(calls) > 6 {
		t.Errorf("%d backend calls for 100 pipelined increments: %v", len(calls), calls)
	}
}

// Garbage gets Redis's protocol error and a closed connection; nothing is
// applied, and other clients carry on.
func TestMalformedInputClosesOnlyThatConnection(t *testing.T) {
	m := newMem()
	s := startServer(t, m, Limits{MaxBulk: 1024})
	good := client(t, s, 2)
	ctx := context.Background()
	for _, in := range []string{
		"*1\r\n$99999999999\r\n",
		"*-99999999999999999999\r\n",
		"*2\r\n$4\r\nINCR\r\n$-3\r\n",
		"*1\r\n:1\r\n",
		"\x00\x01\x02\x03 \"unterminated\r\n",
	} {
		nc, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(nc, in)
		nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		reply, err := io.ReadAll(nc) // the server closes after its error
		nc.Close()
		if err != nil || !strings.HasPrefix(string(reply), "-ERR Protocol error: ") {
			t.Errorf("%q: reply %q, %v", in, reply, err)
		}
		if v, err := good.Incr(ctx, "ok").Result(); err != nil {
			t.Fatalf("other client after %q: %d %v", in, v, err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.vals) != 1 {
		t.Errorf("garbage applied something: %v", m.vals)
	}
}

// A client that hangs up mid-command applies nothing.
func TestHalfSentCommandAppliesNothing(t *testing.T) {
	m := newMem()
	s := startServer(t, m, Limits{})
	nc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(nc, "*2\r\n$4\r\nINCR\r\n$5\r\nab")
	nc.Close()
	c := client(t, s, 2)
	deadline := time.Now().Add(10 * time.Second)
	for s.open.Load() > 1 && time.Now().Before(deadline) {
		c.Ping(context.Background()) // wait for the server to drop the half-sent connection
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.calls) != 0 {
		t.Errorf("half-sent INCR reached the backend: %v", m.calls)
	}
}

func TestConnectionCommands(t *testing.T) {
	s := startServer(t, newMem(), Limits{})
	c := client(t, s, 2)
	ctx := context.Background()
	if err := c.Do(ctx, "CLIENT", "SETNAME", "worker-1").Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.Do(ctx, "CLIENT", "GETNAME").Text(); err != nil || v != "worker-1" {
		t.Fatalf("GETNAME %q %v", v, err)
	}
	if v, err := c.Do(ctx, "CLIENT", "ID").Int64(); err != nil || v <= 0 {
		t.Fatalf("ID %d %v", v, err)
	}
	if v, err := c.Do(ctx, "COMMAND", "COUNT").Int64(); err != nil || v != int64(len(commands)) {
		t.Fatalf("COMMAND COUNT %d %v", v, err)
	}
	info, err := c.Command(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ci := info["mget"]; ci == nil || ci.FirstKeyPos != 1 || ci.LastKeyPos != -1 || ci.StepCount != 1 {
		t.Fatalf("COMMAND mget: %+v", ci)
	}
	if v, err := c.Info(ctx).Result(); err != nil || !strings.Contains(v, "redis_version:") {
		t.Fatalf("INFO %q %v", v, err)
	}
	if v, err := c.ConfigGet(ctx, "save").Result(); err != nil || len(v) != 1 || v["save"] != "" {
		t.Fatalf("CONFIG GET save: %v %v", v, err)
	}
	if v, err := c.ConfigGet(ctx, "append*").Result(); err != nil || len(v) != 2 || v["appendonly"] != "yes" || v["appendfsync"] != "always" {
		t.Fatalf("CONFIG GET append*: %v %v", v, err)
	}
	if v, err := c.ConfigGet(ctx, "maxmemory").Result(); err != nil || len(v) != 0 {
		t.Fatalf("CONFIG GET maxmemory: %v %v", v, err)
	}
	if err := c.Do(ctx, "HELLO", "4").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPROTO") {
		t.Fatalf("HELLO 4: %v", err)
	}
}

func TestQuitClosesAfterReply(t *testing.T) {
	s := startServer(t, newMem(), Limits{})
	nc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	io.WriteString(nc, "QUIT\r\nINCR k\r\n")
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	reply, err := io.ReadAll(nc)
	if err != nil || string(reply) != "+OK\r\n" {
		t.Fatalf("%q %v", reply, err)
	}
}

func TestMaxConns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := serveTest(t, ln, Config{Core: newMem(), MaxConns: 1})
	first := redis.NewClient(&redis.Options{Addr: s.Addr().String(), Protocol: 2, PoolSize: 1})
	defer first.Close()
	if err := first.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	nc, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	reply, _ := io.ReadAll(nc)
	if string(reply) != "-ERR max number of clients reached\r\n" {
		t.Fatalf("second connection: %q", reply)
	}
	if err := first.Ping(context.Background()).Err(); err != nil {
		t.Fatal("first client lost:", err)
	}
}

// One malformed increment in a pipeline fails alone; the others apply.
func TestBadAddInPipelineFailsAlone(t *testing.T) {
	m := newMem()
	s := startServer(t, m, Limits{})
	c := client(t, s, 2)
	ctx := context.Background()
	cmds, _ := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Incr(ctx, "a")
		p.Incr(ctx, "")
		p.Incr(ctx, "a")
		return nil
	})
	if len(cmds) != 3 || cmds[0].Err() != nil || cmds[2].Err() != nil {
		t.Fatalf("valid increments failed: %v", cmds)
	}
	if err := cmds[1].Err(); err == nil || !strings.HasPrefix(err.Error(), "ERR a counter name") {
		t.Fatalf("empty name: %v", err)
	}
	if v := cmds[2].(*redis.IntCmd).Val(); v != 2 {
		t.Fatalf("second INCR = %d, want 2", v)
	}
}

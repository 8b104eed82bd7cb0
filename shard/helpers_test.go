package shard

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"tally/fsm"
	"tally/transport"
)

// Generous: the suite must pass under -race on a slow, noisy 2-core machine.
const (
	waitTimeout = 30 * time.Second // anything that needs an election or replication
	opTimeout   = 15 * time.Second // one Propose or Read that is expected to succeed
	raftTimeout = time.Second      // HeartbeatTimeout and ElectionTimeout
)

// testLogger writes to stderr, which go test shows only for failing
// packages (or with -v). It avoids t.Log on purpose: raft goroutines may log
// after a test returns.
func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
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

func add(name string, delta int64) fsm.Op {
	return fsm.Op{Kind: fsm.OpAdd, Name: name, Delta: delta}
}

func addKey(name string, delta int64, key string) fsm.Op {
	return fsm.Op{Kind: fsm.OpAdd, Name: name, Delta: delta, Key: key}
}

// mustPropose proposes ops on s and fails the test on any error.
func mustPropose(t testing.TB, s *Shard, ops ...fsm.Op) []fsm.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	res, err := s.Propose(ctx, ops)
	if err != nil {
		t.Fatalf("Propose(%v): %v", ops, err)
	}
	if len(res) != len(ops) {
		t.Fatalf("Propose(%d ops) returned %d results: %v", len(ops), len(res), res)
	}
	return res
}

// mustRead reads names on s and fails the test on any error.
func mustRead(t testing.TB, s *Shard, linearizable bool, names ...string) []int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	vals, err := s.Read(ctx, names, linearizable)
	if err != nil {
		t.Fatalf("Read(%v, linearizable=%v): %v", names, linearizable, err)
	}
	if len(vals) != len(names) {
		t.Fatalf("Read(%d names) returned %d values", len(names), len(vals))
	}
	return vals
}

// tryRead is one linearizable read attempt with a short deadline.
func tryRead(s *Shard, names ...string) ([]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return s.Read(ctx, names, true)
}

// isRetryable reports whether err is one a shard returns to say "not done
// here, nothing happened": what a replica without an established leader
// may answer.
func isRetryable(err error) bool {
	_, nl := IsNotLeader(err)
	return nl || errors.Is(err, ErrUnavailable)
}

// node is one member of a test group: a Mux (its node's one port) and the
// shard replica on it (nil once stopped).
type node struct {
	id  string
	mux *transport.Mux
	sh  *Shard
}

// group is one shard replicated on n nodes over n Muxes.
type group struct {
	t     testing.TB
	id    uint32
	nodes []*node

	// batches records every ObserveBatch call of every replica, in order.
	bmu     sync.Mutex
	batches []int
	// hook, when set, is called by ObserveBatch (on the proposer goroutine
	// of replica node) after recording; a gate uses it to hold that
	// proposer still.
	hook atomic.Pointer[func(node, ops int)]

	// leaderChanges records each replica's OnLeaderChange calls.
	lmu           sync.Mutex
	leaderChanges [][]bool
}

// startGroup opens n in-memory replicas of shard 7, bootstraps them from
// the first one, and waits for a leader that serves linearizable reads.
// tweak, if not nil, may change each replica's Config before Open.
func startGroup(t testing.TB, n int, tweak func(i int, c *Config)) *group {
	t.Helper()
	g := &group{t: t, id: 7, leaderChanges: make([][]bool, n)}
	logger := testLogger()
	voters := map[string]string{}
	for i := range n {
		m, err := transport.Listen("127.0.0.1:0", "", false, logger)
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		t.Cleanup(func() { m.Close() })
		nd := &node{id: fmt.Sprintf("n%d", i+1), mux: m}
		g.nodes = append(g.nodes, nd)
		voters[nd.id] = m.Addr()
	}
	for i := range g.nodes {
		cfg := g.config(i)
		cfg.InMemory = true
		if tweak != nil {
			tweak(i, &cfg)
		}
		g.open(i, cfg)
	}
	if err := g.nodes[0].sh.Bootstrap(voters); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	g.waitLeader()
	return g
}

// config is the base Config of replica i.
func (g *group) config(i int) Config {
	nd := g.nodes[i]
	return Config{
		ID:               g.id,
		NodeID:           nd.id,
		Stream:           nd.mux.StreamLayer(g.id),
		Logger:           testLogger().With("node", nd.id),
		HeartbeatTimeout: raftTimeout,
		ElectionTimeout:  raftTimeout,
		ObserveBatch: func(ops int) {
			g.bmu.Lock()
			g.batches = append(g.batches, ops)
			g.bmu.Unlock()
			if h := g.hook.Load(); h != nil {
				(*h)(i, ops)
			}
		},
		OnLeaderChange: func(leader bool) {
			g.lmu.Lock()
			g.leaderChanges[i] = append(g.leaderChanges[i], leader)
			g.lmu.Unlock()
		},
	}
}

// open starts replica i with cfg and registers its Close.
func (g *group) open(i int, cfg Config) *Shard {
	g.t.Helper()
	s, err := Open(cfg)
	if err != nil {
		g.t.Fatalf("open %s: %v", g.nodes[i].id, err)
	}
	g.t.Cleanup(func() { s.Close() })
	g.nodes[i].sh = s
	return s
}

// stop closes replica i (its Mux stays up, as when only the shard stops).
func (g *group) stop(i int) {
	g.t.Helper()
	if err := g.nodes[i].sh.Close(); err != nil {
		g.t.Fatalf("close %s: %v", g.nodes[i].id, err)
	}
	g.nodes[i].sh = nil
}

// waitLeader waits until some running replica leads and its term marker is
// applied, i.e. a linearizable read succeeds on it, and returns its index.
func (g *group) waitLeader() int {
	g.t.Helper()
	leader := -1
	waitFor(g.t, waitTimeout, "a leader serving linearizable reads", func() bool {
		for i, nd := range g.nodes {
			if nd.sh == nil || !nd.sh.IsLeader() {
				continue
			}
			if _, err := tryRead(nd.sh, "x"); err == nil {
				leader = i
				return true
			}
		}
		return false
	})
	return leader
}

// followers returns the indexes of running replicas other than leader.
func (g *group) followers(leader int) []int {
	var out []int
	for i, nd := range g.nodes {
		if i != leader && nd.sh != nil {
			out = append(out, i)
		}
	}
	return out
}

// batchMark and batchesSince give the ObserveBatch calls made after a point.
func (g *group) batchMark() int {
	g.bmu.Lock()
	defer g.bmu.Unlock()
	return len(g.batches)
}

func (g *group) batchesSince(mark int) []int {
	g.bmu.Lock()
	defer g.bmu.Unlock()
	return append([]int(nil), g.batches[mark:]...)
}

func (g *group) lastLeaderChange(i int) (leader, ok bool) {
	g.lmu.Lock()
	defer g.lmu.Unlock()
	ch := g.leaderChanges[i]
	if len(ch) == 0 {
		return false, false
	}
	return ch[len(ch)-1], true
}

// gate holds a replica's proposer still: installed as the group's hook, it
// blocks every ObserveBatch call that match accepts (ObserveBatch runs on
// the proposer's goroutine, after the entry is formed and before it is
// handed to raft) until release. While it holds, new proposals can only
// queue, which lets tests arrange batches without depending on timing.
type gate struct {
	match   func(node, ops int) bool
	blocked chan int // the node of each held call
	open    chan struct{}
	once    sync.Once
}

// holdProposer installs a gate on g. It is released at cleanup at the
// latest, before the replicas close.
func holdProposer(g *group, match func(node, ops int) bool) *gate {
	gt := &gate{match: match, blocked: make(chan int, 64), open: make(chan struct{})}
	h := func(node, ops int) {
		if !gt.match(node, ops) {
			return
		}
		select {
		case <-gt.open:
			return
		default:
		}
		gt.blocked <- node
		<-gt.open
	}
	g.hook.Store(&h)
	g.t.Cleanup(gt.release)
	return gt
}

// waitHeld waits until a proposer is held and returns its node.
func (gt *gate) waitHeld(t testing.TB) int {
	t.Helper()
	select {
	case n := <-gt.blocked:
		return n
	case <-time.After(waitTimeout):
		t.Fatalf("timed out after %v waiting for a proposer to reach the gate", waitTimeout)
		return -1
	}
}

func (gt *gate) release() { gt.once.Do(func() { close(gt.open) }) }

// queued is the number of proposals waiting for the proposer loop
// (including abandoned ones it has not yet skipped).
func queued(s *Shard) int { return len(s.prop.ch) }

type asyncResult struct {
	res []fsm.Result
	err error
}

// proposeAsync runs Propose in a goroutine. The goroutine touches nothing
// of the test's, so it needs no waiting for: the replicas' Close at cleanup
// ends it.
func proposeAsync(ctx context.Context, s *Shard, ops ...fsm.Op) <-chan asyncResult {
	ch := make(chan asyncResult, 1)
	go func() {
		res, err := s.Propose(ctx, ops)
		ch <- asyncResult{res, err}
	}()
	return ch
}

func await(t testing.TB, ch <-chan asyncResult, what string) asyncResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitTimeout):
		t.Fatalf("timed out after %v waiting for %s", waitTimeout, what)
		return asyncResult{}
	}
}

package node

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"
)

// testCluster is a cluster of in-process nodes on loopback ports.
type testCluster struct {
	t     *testing.T
	nodes []*Node
	cfgs  []Config
}

func testLogger(t *testing.T) *slog.Logger {
	if os.Getenv("TALLY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// startCluster starts size nodes that form one cluster and waits until
// every node is ready. Timeouts are relaxed for the race detector.
func startCluster(t *testing.T, size, shards int) *testCluster {
	t.Helper()
	return startClusterWith(t, size, shards, nil)
}

// startClusterWith is startCluster with each node's Config adjusted by
// tune (if not nil). Auto-split is off unless tune turns it on, so that
// load tests measure what they name.
func startClusterWith(t *testing.T, size, shards int, tune func(*Config)) *testCluster {
	t.Helper()
	tc := &testCluster{t: t}
	var seed string
	for i := 0; i < size; i++ {
		cfg := Config{
			ID:                fmt.Sprintf("n%d", i+1),
			DataDir:           t.TempDir(),
			HTTPAddr:          "127.0.0.1:0",
			RaftAddr:          "127.0.0.1:0",
			GossipAddr:        "127.0.0.1:0",
			BootstrapExpect:   size,
			Shards:            shards,
			Logger:            testLogger(t),
			HeartbeatTimeout:  time.Second,
			ElectionTimeout:   time.Second,
			BalanceInterval:   time.Second,
			RequestTimeout:    10 * time.Second,
			SnapshotThreshold: 1024,
			NoAutoSplit:       true,
		}
		if tune != nil {
			tune(&cfg)
		}
		if seed != "" {
			cfg.Join = []string{seed}
		}
		n, err := Start(cfg)
		if err != nil {
			t.Fatalf("start %s: %v", cfg.ID, err)
		}
		if seed == "" {
			seed = n.GossipAddr()
		}
		// Keep the bound ports so a restart reuses them.
		cfg.HTTPAddr, cfg.RaftAddr, cfg.GossipAddr = n.HTTPAddr(), n.RaftAddr(), n.GossipAddr()
		tc.nodes = append(tc.nodes, n)
		tc.cfgs = append(tc.cfgs, cfg)
	}
	t.Cleanup(tc.stopAll)
	tc.waitReady(tc.nodes...)
	tc.waitBalanced(shards)
	return tc
}

// waitBalanced waits until no live node leads more than its share of the
// shards: the leader balancer's job, and a steady state to test from.
func (tc *testCluster) waitBalanced(shards int) {
	tc.t.Helper()
	live := 0
	for _, n := range tc.nodes {
		if n != nil {
			live++
		}
	}
	share := (shards + live - 1) / live
	waitFor(tc.t, "shard leaders spread over the nodes", 90*time.Second, func() bool {
		counts := map[int]int{}
		for s := 0; s < shards; s++ {
			li := tc.leaderNode(uint32(s))
			if li < 0 {
				return false
			}
			counts[li]++
		}
		for _, c := range counts {
			if c > share {
				return false
			}
		}
		return true
	})
}

func (tc *testCluster) stopAll() {
	for _, n := range tc.nodes {
		if n != nil {
			n.Kill()
		}
	}
}

func (tc *testCluster) httpAddrs() []string {
	var out []string
	for _, n := range tc.nodes {
		if n != nil {
			out = append(out, n.HTTPAddr())
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (tc *testCluster) waitReady(nodes ...*Node) {
	tc.t.Helper()
	waitFor(tc.t, "nodes ready", 90*time.Second, func() bool {
		for _, n := range nodes {
			resp, err := testHTTP.Get("http://" + n.HTTPAddr() + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return false
			}
		}
		return true
	})
}

// leaderNode returns the index of the node leading shard s.
func (tc *testCluster) leaderNode(s uint32) int {
	for i, n := range tc.nodes {
		if n == nil {
			continue
		}
		if sh := n.shard(s); sh != nil && sh.IsLeader() {
			return i
		}
	}
	return -1
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// Package testcluster runs in-process tally clusters for tests: nodes on
// loopback ports, each serving the HTTP API (and the RESP listener when
// asked), plus the helpers the tests of
// node/ and httpapi/ share to talk to them.
package testcluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"tally/httpapi"
	"tally/node"
	"tally/resp"
)

// Cluster is a cluster of in-process nodes. A test that kills a node sets
// its slot in Nodes to nil; Cfgs keeps every node's config with the ports
// it bound, so a restart reuses them.
type Cluster struct {
	T     testing.TB
	Nodes []*node.Node
	Cfgs  []node.Config
	// RESP, when set, is how the nodes' RESP listeners treat keys other
	// nodes lead; nodes whose Config has a RESPAddr serve RESP.
	RESP *resp.Redirect
}

// Logger discards logs unless TALLY_TEST_LOG is set.
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("TALLY_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// StartNode starts one node serving the HTTP API, and kills it when the
// test ends.
func StartNode(t testing.TB, cfg node.Config) *node.Node {
	t.Helper()
	return startNode(t, cfg, resp.Forward)
}

func startNode(t testing.TB, cfg node.Config, redirect resp.Redirect) *node.Node {
	t.Helper()
	n, err := node.Start(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", cfg.ID, err)
	}
	n.Serve(httpapi.NewServer(n))
	if cfg.RESPAddr != "" {
		rs := resp.New(resp.Config{Core: n, Router: resp.NodeRouter(n), Redirect: redirect, NodeID: cfg.ID, Tokens: cfg.Tokens, Logger: cfg.Logger})
		if err := n.ServeRESP(rs); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(n.Kill)
	return n
}

// Restart starts node i again with its config (same ports and data).
func (tc *Cluster) Restart(i int) *node.Node {
	tc.T.Helper()
	redirect := resp.Forward
	if tc.RESP != nil {
		redirect = *tc.RESP
	}
	n := startNode(tc.T, tc.Cfgs[i], redirect)
	tc.Nodes[i] = n
	return n
}

// Add starts one more node, n<k> for the k-th, that joins the formed
// cluster through the first node's gossip address, and waits until it is
// ready. tune adjusts its Config as StartWith's does.
func (tc *Cluster) Add(tune func(*node.Config)) *node.Node {
	tc.T.Helper()
	base := tc.Cfgs[0]
	cfg := base
	cfg.ID = fmt.Sprintf("n%d", len(tc.Cfgs)+1)
	cfg.DataDir = tc.T.TempDir()
	cfg.HTTPAddr, cfg.RaftAddr, cfg.GossipAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	if cfg.RESPAddr != "" {
		cfg.RESPAddr = "127.0.0.1:0"
	}
	cfg.Join = nil
	for i, c := range tc.Cfgs {
		if tc.Nodes[i] != nil {
			cfg.Join = append(cfg.Join, c.GossipAddr)
		}
	}
	if tune != nil {
		tune(&cfg)
	}
	redirect := resp.Forward
	if tc.RESP != nil {
		redirect = *tc.RESP
	}
	n := startNode(tc.T, cfg, redirect)
	cfg.HTTPAddr, cfg.RaftAddr, cfg.GossipAddr = n.HTTPAddr(), n.RaftAddr(), n.GossipAddr()
	if cfg.RESPAddr != "" {
		cfg.RESPAddr = n.RESPAddr()
	}
	tc.Nodes = append(tc.Nodes, n)
	tc.Cfgs = append(tc.Cfgs, cfg)
	tc.WaitReady(n)
	return n
}

// StartRESP is StartWith for nodes that also serve RESP, treating keys
// other nodes lead by redirect.
func StartRESP(t testing.TB, size, shards int, redirect resp.Redirect, tune func(*node.Config)) *Cluster {
	t.Helper()
	return start(t, size, shards, &redirect, tune)
}

// Start starts size nodes that form one cluster and waits until every
// node is ready and the shard leaders are spread.
func Start(t testing.TB, size, shards int) *Cluster {
	t.Helper()
	return StartWith(t, size, shards, nil)
}

// StartWith is Start with each node's Config adjusted by tune (if not
// nil). Auto-split is off unless tune turns it on, so that load tests
// measure what they name. Timeouts are relaxed for the race detector.
func StartWith(t testing.TB, size, shards int, tune func(*node.Config)) *Cluster {
	t.Helper()
	return start(t, size, shards, nil, tune)
}

func start(t testing.TB, size, shards int, redirect *resp.Redirect, tune func(*node.Config)) *Cluster {
	t.Helper()
	tc := &Cluster{T: t, RESP: redirect}
	var seed string
	for i := 0; i < size; i++ {
		cfg := node.Config{
			ID:                fmt.Sprintf("n%d", i+1),
			DataDir:           t.TempDir(),
			HTTPAddr:          "127.0.0.1:0",
			RaftAddr:          "127.0.0.1:0",
			GossipAddr:        "127.0.0.1:0",
			BootstrapExpect:   size,
			Shards:            shards,
			Logger:            Logger(t),
			HeartbeatTimeout:  time.Second,
			ElectionTimeout:   time.Second,
			BalanceInterval:   time.Second,
			RequestTimeout:    10 * time.Second,
			SnapshotThreshold: 1024,
			NoAutoSplit:       true,
		}
		if redirect != nil {
			cfg.RESPAddr = "127.0.0.1:0"
		}
		if tune != nil {
			tune(&cfg)
		}
		if seed != "" {
			cfg.Join = []string{seed}
		}
		mode := resp.Forward
		if redirect != nil {
			mode = *redirect
		}
		n := startNode(t, cfg, mode)
		if seed == "" {
			seed = n.GossipAddr()
		}
		// Keep the bound ports so a restart reuses them.
		cfg.HTTPAddr, cfg.RaftAddr, cfg.GossipAddr = n.HTTPAddr(), n.RaftAddr(), n.GossipAddr()
		if cfg.RESPAddr != "" {
			cfg.RESPAddr = n.RESPAddr()
		}
		tc.Nodes = append(tc.Nodes, n)
		tc.Cfgs = append(tc.Cfgs, cfg)
	}
	tc.WaitReady(tc.Nodes...)
	tc.WaitBalanced(shards)
	return tc
}

// WaitBalanced waits until no live node leads more than its share of the
// shards: the leader balancer's job, and a steady state to test from.
func (tc *Cluster) WaitBalanced(shards int) {
	tc.T.Helper()
	live := 0
	for _, n := range tc.Nodes {
		if n != nil {
			live++
		}
	}
	share := (shards + live - 1) / live
	WaitFor(tc.T, "shard leaders spread over the nodes", 90*time.Second, func() bool {
		counts := map[int]int{}
		for s := 0; s < shards; s++ {
			li := tc.LeaderNode(uint32(s))
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

// HTTPAddrs lists the live nodes' HTTP addresses.
func (tc *Cluster) HTTPAddrs() []string {
	var out []string
	for _, n := range tc.Nodes {
		if n != nil {
			out = append(out, n.HTTPAddr())
		}
	}
	return out
}

// WaitReady waits until every one of nodes answers /readyz with 200.
func (tc *Cluster) WaitReady(nodes ...*node.Node) {
	tc.T.Helper()
	WaitReady(tc.T, nodes...)
}

// WaitReady waits until every one of nodes answers /readyz with 200.
func WaitReady(t testing.TB, nodes ...*node.Node) {
	t.Helper()
	WaitFor(t, "nodes ready", 90*time.Second, func() bool {
		for _, n := range nodes {
			resp, err := ClientFor(n).Get(BaseURL(n) + "/readyz")
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

// BaseURL is n's HTTP API base URL: https when it serves TLS.
func BaseURL(n *node.Node) string {
	if n.Config().TLS != nil {
		return "https://" + n.HTTPAddr()
	}
	return "http://" + n.HTTPAddr()
}

// ClientFor is HTTP, or for a node that serves TLS an HTTP client that
// trusts its CA.
func ClientFor(n *node.Node) *http.Client {
	sec := n.Config().TLS
	if sec == nil {
		return HTTP
	}
	return &http.Client{Timeout: HTTP.Timeout, Transport: &http.Transport{TLSClientConfig: sec.ClientTLS()}}
}

// LeaderNode returns the index of the node whose own replica leads shard
// s, or -1.
func (tc *Cluster) LeaderNode(s uint32) int {
	for i, n := range tc.Nodes {
		if n == nil {
			continue
		}
		if st := n.ClusterStatus(); int(s) < len(st.Shards) && st.Shards[s].HasAppliedIndex && st.Shards[s].Leader == n.ID() {
			return i
		}
	}
	return -1
}

// WaitFor polls cond until it holds or the deadline passes.
func WaitFor(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Ctx is a context that ends after d or with the test.
func Ctx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// HTTP bounds every test request: a handler that never answers must fail
// the test, not hang it.
var HTTP = &http.Client{Timeout: 60 * time.Second}

// Answer is a JSON answer.
type Answer struct {
	Status int
	Body   map[string]any
	Header http.Header
}

// Do sends one request and decodes its JSON answer (a test failure if it
// is not JSON).
func Do(t testing.TB, method, url, body string, hdr map[string]string) Answer {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := HTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: answer is not JSON (%v): %q", method, url, err, raw)
	}
	return Answer{resp.StatusCode, m, resp.Header}
}

// ErrCode is the error code of an error answer ("" if none).
func ErrCode(a Answer) string {
	e, _ := a.Body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

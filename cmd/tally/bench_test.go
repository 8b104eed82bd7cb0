package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"tally/placement"
)

// countingServer keeps real counts for incr, batch and reads; lose makes
// it drop every 50th increment while still answering 200.
type countingServer struct {
	*httptest.Server
	mu     sync.Mutex
	vals   map[string]int64
	n      int
	lose   bool
	stale  int // reads under load that asked for consistency=stale
	single int // single-counter reads
}

func newCountingServer(t *testing.T, lose bool) *countingServer {
	s := &countingServer{vals: map[string]int64{}, lose: lose}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.Close)
	return s
}

func (s *countingServer) add(name string, d int64) {
	s.n++
	if s.lose && s.n%50 == 0 {
		return
	}
	s.vals[name] += d
}

func (s *countingServer) handle(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := r.URL.Path
	switch {
	case r.Method == http.MethodPost && p == "/v1/batch":
		var req struct {
			Ops []struct {
				Name  string `json:"name"`
				Delta int64  `json:"delta"`
			} `json:"ops"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		res := make([]string, len(req.Ops))
		for i, op := range req.Ops {
			s.add(op.Name, op.Delta)
			res[i] = fmt.Sprintf(`{"name":%q,"value":%d,"exact":true}`, op.Name, s.vals[op.Name])
		}
		io.WriteString(w, `{"results":[`+strings.Join(res, ",")+`]}`)
	case r.Method == http.MethodPost && strings.HasSuffix(p, "/incr"):
		name := strings.TrimSuffix(strings.TrimPrefix(p, "/v1/counters/"), "/incr")
		s.add(name, 1)
		fmt.Fprintf(w, `{"name":%q,"value":%d,"exact":true}`, name, s.vals[name])
	case r.Method == http.MethodGet && p == "/v1/counters":
		var cs []string
		for _, n := range r.URL.Query()["name"] {
			cs = append(cs, fmt.Sprintf(`{"name":%q,"value":%d}`, n, s.vals[n]))
		}
		io.WriteString(w, `{"counters":[`+strings.Join(cs, ",")+`]}`)
	case r.Method == http.MethodGet && strings.HasPrefix(p, "/v1/counters/"):
		s.single++
		if r.URL.Query().Get("consistency") == "stale" {
			s.stale++
		}
		name := strings.TrimPrefix(p, "/v1/counters/")
		fmt.Fprintf(w, `{"name":%q,"value":%d,"shards":[1]}`, name, s.vals[name])
	default:
		w.WriteHeader(404)
		io.WriteString(w, `{"error":{"code":"not_found","message":"no such route"}}`)
	}
}

func TestBench(t *testing.T) {
	s := newCountingServer(t, false)
	svg := filepath.Join(t.TempDir(), "run.svg")
	addr := strings.TrimPrefix(s.URL, "http://")
	code, out, errOut := tally(nil, "--addr", addr+","+addr, "--json", "bench", "--requests", "400", "--clients", "4",
		"--counter", "b", "--counters", "5", "--dist", "zipf", "--batch", "4", "--reads", "0.25", "--consistency", "stale", "--timeline", svg)
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	var rep struct {
		Requests, Ops, Increments, Reads, Errors int64
		Batch                                    int
		Dist                                     string
		Verified                                 bool
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("not JSON: %v: %s", err, out)
	}
	var sum int64
	for _, v := range s.vals {
		sum += v
	}
	if !rep.Verified || rep.Requests != 400 || rep.Errors != 0 || rep.Increments != sum || rep.Increments+rep.Reads != rep.Ops ||
		rep.Increments != 4*(400-rep.Reads) || rep.Batch != 4 || rep.Dist != "zipf" {
		t.Errorf("report %+v, server counted %d", rep, sum)
	}
	if int64(s.stale) != rep.Reads || int64(s.single) != rep.Reads {
		t.Errorf("%d reads reported, server saw %d single reads, %d stale", rep.Reads, s.single, s.stale)
	}
	if b, err := os.ReadFile(svg); err != nil || !strings.HasPrefix(string(b), "<svg") {
		t.Errorf("timeline: %v %.40q", err, b)
	}
}

func TestBenchDetectsLostIncrements(t *testing.T) {
	s := newCountingServer(t, true)
	code, out, errOut := tally(nil, "--addr", strings.TrimPrefix(s.URL, "http://"), "bench", "--requests", "200", "--clients", "2")
	if code != exitError || !strings.Contains(errOut, "verification failed") {
		t.Errorf("exit %d, stdout %q, stderr %q; want a failed verification", code, out, errOut)
	}
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"--batch", "0"}, {"--batch", "1001"}, {"--consistency", "maybe"}, {"--dist", "pareto"},
		{"--reads", "1.5"}, {"--clients", "0"}, {"extra"}, {"--route", "nearest"},
	} {
		code, _, errOut := tally(nil, append([]string{"--addr", "127.0.0.1:1", "bench"}, args...)...)
		if code != exitUsage {
			t.Errorf("bench %v: exit %d (%s), want %d", args, code, strings.TrimSpace(errOut), exitUsage)
		}
	}
}

// leaderNode is a node of a fake two-node, two-shard cluster answering
// from one shared countingServer: node i leads shard i, and it records
// the counters whose increments reached it.
type leaderNode struct {
	*httptest.Server
	mu    sync.Mutex
	incrs map[string]int
}

func newLeaderNodes(t *testing.T) [2]*leaderNode {
	shared := newCountingServer(t, false)
	var nodes [2]*leaderNode
	cluster := func() string {
		return fmt.Sprintf(`{"node":"n0","key_placement":{"scheme":"slots","shards":2},`+
			`"members":[{"id":"n0","http":%q,"state":"alive"},{"id":"n1","http":%q,"state":"alive"}],`+
			`"shards":[{"id":0,"leader":"n0"},{"id":1,"leader":"n1"}]}`,
			strings.TrimPrefix(nodes[0].URL, "http://"), strings.TrimPrefix(nodes[1].URL, "http://"))
	}
	for i := range nodes {
		n := &leaderNode{incrs: map[string]int{}}
		n.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/v1/cluster" {
				io.WriteString(w, cluster())
				return
			}
			if name, ok := strings.CutSuffix(strings.TrimPrefix(r.URL.Path, "/v1/counters/"), "/incr"); ok {
				n.mu.Lock()
				n.incrs[name]++
				n.mu.Unlock()
			}
			shared.handle(w, r)
		}))
		t.Cleanup(n.Close)
		nodes[i] = n
	}
	return nodes
}

// TestBenchRoute: with --route leader (the default) every increment goes
// to the node that leads its counter's shard, whichever --addr node the
// client was given; with --route any, to the client's --addr node.
func TestBenchRoute(t *testing.T) {
	for _, mode := range []string{"", "leader", "any"} {
		nodes := newLeaderNodes(t)
		args := []string{"--addr", strings.TrimPrefix(nodes[0].URL, "http://"), "--json", "bench", "--requests", "200", "--clients", "4",
			"--counter", "r", "--counters", "20", "--node-metrics=false"}
		if mode != "" {
			args = append(args, "--route", mode)
		}
		code, out, errOut := tally(nil, args...)
		if code != 0 || errOut != "" {
			t.Fatalf("--route %q: exit %d: %s %s", mode, code, out, errOut)
		}
		var rep struct {
			Increments int64
			Route      string
		}
		if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.Increments != 200 {
			t.Fatalf("--route %q: report %s (%v)", mode, out, err)
		}
		if want := cmp.Or(mode, "leader"); rep.Route != want {
			t.Errorf("--route %q: the report says route %q, want %q", mode, rep.Route, want)
		}
		for i, n := range nodes {
			for name, k := range n.incrs {
				want := int(placement.Home(name, 2)) // node i leads shard i
				if mode == "any" {
					want = 0
				}
				if i != want {
					t.Errorf("--route %q: %d increments of %s reached node %d, want node %d", mode, k, name, i, want)
				}
			}
		}
		if mode != "any" && len(nodes[1].incrs) == 0 {
			t.Errorf("--route %q: no increment reached the other shard's leader", mode)
		}
	}
}

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metricNode is one node of a fake cluster: every node answers the API
// from one shared countingServer, and each keeps its own counters on
// /metrics (served by client_golang, as tallyd does) that rise with the
// write requests it answers, as its nodeSpec says.
type metricNode struct {
	*httptest.Server
	nodeSpec

	mu       sync.Mutex
	requests int // write requests answered
	ops      int // increments in them
	scrapes  int

	cpuTotal, commits, synced, forwarded prometheus.Counter
	entryOps                             prometheus.Histogram
	reg                                  *prometheus.Registry
}

// nodeSpec is what each write request costs a metricNode: cpu seconds,
// entriesPer raft entries carrying the request's ops, one log commit, and
// one fsync or one forward where syncs or forwards is set. broken makes
// its /metrics fail.
type nodeSpec struct {
	cpu             float64
	entriesPer      int
	syncs, forwards bool
	broken          bool
}

func newMetricNode(t *testing.T, shared *countingServer, spec nodeSpec) *metricNode {
	m := &metricNode{nodeSpec: spec}
	m.reg = prometheus.NewRegistry()
	m.cpuTotal = prometheus.NewCounter(prometheus.CounterOpts{Name: "process_cpu_seconds_total", Help: "cpu"})
	m.commits = prometheus.NewCounter(prometheus.CounterOpts{Name: "tally_log_commits_total", Help: "commits"})
	m.entryOps = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tally_raft_entry_ops", Help: "ops per entry",
		Buckets: prometheus.ExponentialBuckets(1, 2, 13)})
	m.reg.MustRegister(m.cpuTotal, m.commits, m.entryOps)
	if m.syncs {
		m.synced = prometheus.NewCounter(prometheus.CounterOpts{Name: "tally_log_syncs_total", Help: "fsyncs"})
		m.reg.MustRegister(m.synced)
	}
	if m.forwards {
		m.forwarded = prometheus.NewCounter(prometheus.CounterOpts{Name: "tally_forwarded_out_total", Help: "forwarded"})
		m.reg.MustRegister(m.forwarded)
	}
	// The CPU counter starts where a node that has run a while would be.
	m.cpuTotal.Add(3.5)
	metrics := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/metrics" {
			m.mu.Lock()
			m.scrapes++
			m.mu.Unlock()
			if m.broken {
				http.Error(w, "boom", http.StatusInternalServerError)
				return
			}
			metrics.ServeHTTP(w, r)
			return
		}
		if r.Method == http.MethodPost {
			m.write(r)
		}
		shared.handle(w, r)
	}))
	t.Cleanup(m.Close)
	return m
}

// write counts a write request before it is answered, so the counters
// are up to date once the client has its answer.
func (m *metricNode) write(r *http.Request) {
	ops := 1
	if r.URL.Path == "/v1/batch" {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		var req struct{ Ops []json.RawMessage }
		json.Unmarshal(body, &req)
		ops = len(req.Ops)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.requests++
	m.ops += ops
	m.cpuTotal.Add(m.cpu)
	for range m.entriesPer {
		m.entryOps.Observe(float64(ops) / float64(m.entriesPer))
	}
	m.commits.Inc()
	if m.syncs {
		m.synced.Inc()
	}
	if m.forwards {
		m.forwarded.Inc()
	}
}

func (m *metricNode) addr() string { return strings.TrimPrefix(m.URL, "http://") }

func (m *metricNode) counts() (requests, ops, scrapes int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.requests, m.ops, m.scrapes
}

type nodeCost struct {
	Nodes []struct {
		Addr            string
		Error           string
		CPUSeconds      *float64 `json:"cpu_seconds"`
		CPUMicrosPerOp  *float64 `json:"cpu_us_per_op"`
		Entries, Fsyncs *float64
		FsyncsEstimated bool `json:"fsyncs_estimated"`
	}
	Measured           int
	CPUSeconds         float64  `json:"cpu_seconds"`
	CPUMicrosPerOp     *float64 `json:"cpu_us_per_op"`
	Entries            *float64
	OpsPerEntry        *float64 `json:"ops_per_entry"`
	Fsyncs             *float64
	FsyncsPerIncrement *float64 `json:"fsyncs_per_increment"`
	FsyncsEstimated    bool     `json:"fsyncs_estimated"`
	Forwarded          *float64
	ForwardedShare     *float64 `json:"forwarded_share"`
}

func num(p *float64) float64 {
	if p == nil {
		return -1
	}
	return *p
}

// The CPU and log figures of `tally bench` are the nodes' own counters:
// node a counts its fsyncs, node b does not (two per commit), b forwards
// every request, c's /metrics is broken. The CPU costs are powers of two,
// so every figure is exact. a is named twice in --addr and still counted
// once.
func TestBenchNodeCost(t *testing.T) {
	shared := newCountingServer(t, false)
	a := newMetricNode(t, shared, nodeSpec{cpu: 1.0 / 1024, entriesPer: 1, syncs: true})
	b := newMetricNode(t, shared, nodeSpec{cpu: 1.0 / 4096, entriesPer: 2, forwards: true})
	c := newMetricNode(t, shared, nodeSpec{cpu: 1.0 / 8, entriesPer: 1, broken: true})
	addrs := strings.Join([]string{a.addr(), b.addr(), c.addr(), a.addr()}, ",")
	code, out, errOut := tally(nil, "--addr", addrs, "--json", "bench", "--requests", "300", "--clients", "8", "--batch", "4")
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	var rep struct {
		Requests, Ops, Increments int64
		NodeCost                  *nodeCost `json:"node_cost"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || rep.NodeCost == nil {
		t.Fatalf("no node cost in the report (%v): %s", err, out)
	}
	nc := rep.NodeCost
	ra, oa, sa := a.counts()
	rb, ob, sb := b.counts()
	rc, oc, sc := c.counts()
	if ra == 0 || rb == 0 || rc == 0 || int64(oa+ob+oc) != rep.Ops || rep.Ops != rep.Increments || rep.Ops != 1200 {
		t.Fatalf("load: a %d, b %d, c %d requests, %d ops reported", ra, rb, rc, rep.Ops)
	}
	if sa != 2 || sb != 2 || sc != 2 {
		t.Errorf("scrapes: a %d, b %d, c %d; want each node twice (before and after)", sa, sb, sc)
	}
	cpuA, cpuB := float64(ra)/1024, float64(rb)/4096
	ops := float64(rep.Ops)
	if len(nc.Nodes) != 3 || nc.Measured != 2 {
		t.Fatalf("nodes %+v, measured %d; want a, b and c, 2 measured", nc.Nodes, nc.Measured)
	}
	na, nb, ncc := nc.Nodes[0], nc.Nodes[1], nc.Nodes[2]
	for name, got := range map[string][2]float64{
		"cpu_seconds":          {nc.CPUSeconds, cpuA + cpuB},
		"cpu_us_per_op":        {num(nc.CPUMicrosPerOp), (cpuA + cpuB) * 1e6 / ops},
		"a cpu_seconds":        {num(na.CPUSeconds), cpuA},
		"a cpu_us_per_op":      {num(na.CPUMicrosPerOp), cpuA * 1e6 / ops},
		"b cpu_us_per_op":      {num(nb.CPUMicrosPerOp), cpuB * 1e6 / ops},
		"entries":              {num(nc.Entries), float64(ra + 2*rb)},
		"ops_per_entry":        {num(nc.OpsPerEntry), float64(oa+ob) / float64(ra+2*rb)},
		"a fsyncs":             {num(na.Fsyncs), float64(ra)},
		"b fsyncs":             {num(nb.Fsyncs), float64(2 * rb)},
		"fsyncs_per_increment": {num(nc.FsyncsPerIncrement), float64(ra+2*rb) / ops},
		"forwarded":            {num(nc.Forwarded), float64(rb)},
		"forwarded_share":      {num(nc.ForwardedShare), float64(rb) / float64(rep.Requests)},
	} {
		if got[0] != got[1] {
			t.Errorf("%s = %v, want %v", name, got[0], got[1])
		}
	}
	if na.Addr != a.addr() || nb.Addr != b.addr() || ncc.Addr != c.addr() {
		t.Errorf("addresses %q %q %q", na.Addr, nb.Addr, ncc.Addr)
	}
	if !nc.FsyncsEstimated || na.FsyncsEstimated || !nb.FsyncsEstimated {
		t.Errorf("estimated fsyncs: run %v, a %v, b %v", nc.FsyncsEstimated, na.FsyncsEstimated, nb.FsyncsEstimated)
	}
	if ncc.Error != "not scraped before the run: GET /metrics: 500 Internal Server Error" || ncc.CPUSeconds != nil {
		t.Errorf("broken node: %+v", ncc)
	}

	// The same in text, and --node-metrics=false scrapes nothing.
	code, out, errOut = tally(nil, "--addr", addrs, "bench", "--requests", "100", "--clients", "4")
	if code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	for _, want := range []string{
		"\nnode CPU: ", " µs per op, ", " s in all (2 of 3 nodes; the others are not counted)\n",
		"\n  " + a.addr() + ": ", "\n  " + b.addr() + ": ",
		"\n  " + c.addr() + ": not measured: not scraped before the run: GET /metrics: 500 Internal Server Error\n",
		"\nops per raft entry ", "; fsyncs per increment ", ", counted as 2 per log commit where a node counts no fsyncs; ",
		" requests forwarded between nodes (", "% of requests)\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("text report lacks %q:\n%s", want, out)
		}
	}
	_, _, before := a.counts()
	code, out, errOut = tally(nil, "--addr", addrs, "bench", "--requests", "20", "--clients", "2", "--node-metrics=false")
	if _, _, after := a.counts(); code != 0 || after != before || strings.Contains(out, "node CPU") {
		t.Errorf("--node-metrics=false: exit %d, %d scrapes, output %q %q", code, after-before, out, errOut)
	}
}

// A fake node whose /metrics is not Prometheus text, or lacks the CPU
// counter, is reported as not measured with the reason.
func TestParseNodeMetrics(t *testing.T) {
	for body, want := range map[string]string{
		"process_cpu_seconds_total 1.5\ntally_log_commits_total 7\n": "",
		"tally_log_commits_total 7\n":                                "no process_cpu_seconds_total",
		"<html>not metrics</html>\n":                                 "does not parse",
	} {
		vals, err := parseNodeMetrics(strings.NewReader(body))
		switch {
		case want == "" && (err != nil || vals["cpu_seconds"] != 1.5 || vals["log_commits"] != 7 || len(vals) != 2):
			t.Errorf("%q: %v %v", body, vals, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%q: error %v, want %q", body, err, want)
		}
	}
}

// A node that is down is reported with the reason, once, without the
// URL repeated.
func TestScrapeDeadNode(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	got := newNodeScraper([]string{addr}, &http.Client{Timeout: 5 * time.Second}).Scrape(context.Background())
	if len(got) != 1 || got[0].Addr != addr || got[0].Err == nil || got[0].Values != nil {
		t.Fatalf("samples %+v", got)
	}
	if msg := got[0].Err.Error(); !strings.HasPrefix(msg, "GET /metrics: ") || !strings.Contains(msg, "connection refused") || strings.Contains(msg, "http://") {
		t.Errorf("error %q", msg)
	}
}

package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
)

func sample(addr string, kv ...any) NodeSample {
	s := NodeSample{Addr: addr, Values: map[string]float64{}}
	for i := 0; i < len(kv); i += 2 {
		s.Values[kv[i].(string)] = kv[i+1].(float64)
	}
	return s
}

func val(p *float64) any {
	if p == nil {
		return nil
	}
	return *p
}

// The figures are exact binary fractions, so they are compared with ==.
func TestNodeCost(t *testing.T) {
	before := []NodeSample{
		sample("a", SampleCPU, 10.0, SampleEntryOps, 100.0, SampleEntries, 10.0, SampleCommits, 7.0, SampleSyncs, 9.0, SampleForwarded, 1.0),
		sample("b", SampleCPU, 2.0, SampleEntryOps, 0.0, SampleEntries, 0.0, SampleCommits, 3.0),
		{Addr: "c", Err: errors.New("GET /metrics: 404 Not Found")},
		sample("d", SampleCPU, 5.0),
		sample("e", SampleCPU, 1.0),
	}
	after := []NodeSample{
		sample("a", SampleCPU, 10.5, SampleEntryOps, 356.0, SampleEntries, 26.0, SampleCommits, 27.0, SampleSyncs, 29.0, SampleForwarded, 65.0),
		sample("b", SampleCPU, 2.25, SampleEntryOps, 128.0, SampleEntries, 16.0, SampleCommits, 11.0),
		{Addr: "c", Err: errors.New("GET /metrics: 404 Not Found")},
		sample("d", SampleCPU, 0.5), // restarted
		{Addr: "e", Err: errors.New("GET /metrics: connection refused")},
	}
	c := NewNodeCost(before, after, 256, 512, 384)
	if c.Measured != 2 || len(c.Nodes) != 5 || c.CPUSeconds != 0.75 {
		t.Fatalf("measured %d of %d nodes, %v s: %+v", c.Measured, len(c.Nodes), c.CPUSeconds, c)
	}
	// CPU: 0.5 + 0.25 s over 512 ops; entries 16 + 16 carrying 256 + 128
	// ops; fsyncs 20 counted by a, 2 × 8 commits estimated for b.
	for name, got := range map[string][2]any{
		"cpu_us_per_op":        {val(c.CPUMicrosPerOp), 0.75e6 / 512},
		"entries":              {val(c.Entries), 32.0},
		"ops_per_entry":        {val(c.OpsPerEntry), 12.0},
		"fsyncs":               {val(c.Fsyncs), 36.0},
		"fsyncs_per_increment": {val(c.FsyncsPerIncr), 36.0 / 384},
		"forwarded":            {val(c.Forwarded), 64.0},
		"forwarded_share":      {val(c.ForwardedShare), 0.25},
		"a cpu_us_per_op":      {val(c.Nodes[0].CPUMicrosPerOp), 0.5e6 / 512},
		"a fsyncs":             {val(c.Nodes[0].Fsyncs), 20.0},
		"b fsyncs":             {val(c.Nodes[1].Fsyncs), 16.0},
		"b entries":            {val(c.Nodes[1].Entries), 16.0},
	} {
		if got[0] != got[1] {
			t.Errorf("%s = %v, want %v", name, got[0], got[1])
		}
	}
	if !c.FsyncsEstimated || c.Nodes[0].FsyncsEstimated || !c.Nodes[1].FsyncsEstimated {
		t.Errorf("estimated fsyncs: run %v, a %v, b %v", c.FsyncsEstimated, c.Nodes[0].FsyncsEstimated, c.Nodes[1].FsyncsEstimated)
	}
	for i, want := range []string{"", "", "not scraped before the run: GET /metrics: 404", "the node restarted", "not scraped after the run: GET /metrics: connection refused"} {
		if got := c.Nodes[i].Error; (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("node %s: error %q, want %q", c.Nodes[i].Addr, got, want)
		}
		if c.Nodes[i].Error != "" && c.Nodes[i].CPUSeconds != nil {
			t.Errorf("node %s is not measured but has CPU seconds", c.Nodes[i].Addr)
		}
	}

	var text bytes.Buffer
	c.WriteText(&text)
	want := "node CPU: 1464.8 µs per op, 0.750 s in all (2 of 5 nodes; the others are not counted)\n" +
		"  a: 976.6 µs per op (0.500 s), 16 raft entries proposed, 20 fsyncs\n" +
		"  b: 488.3 µs per op (0.250 s), 16 raft entries proposed, 16 fsyncs\n" +
		"  c: not measured: not scraped before the run: GET /metrics: 404 Not Found\n" +
		"  d: not measured: cpu_seconds went down from 5 to 0.5: the node restarted during the run\n" +
		"  e: not measured: not scraped after the run: GET /metrics: connection refused\n" +
		"ops per raft entry 12.00 (32 entries); fsyncs per increment 0.094 (36 fsyncs), counted as 2 per log commit where a node counts no fsyncs; 64 requests forwarded between nodes (25.0% of requests)\n"
	if text.String() != want {
		t.Errorf("text:\n%s\nwant:\n%s", text.String(), want)
	}
}

// Nodes that export only CPU get no raft figures, and a run with no
// acknowledged op no per-op figures.
func TestNodeCostWithoutRaftCounters(t *testing.T) {
	c := NewNodeCost([]NodeSample{sample("x", SampleCPU, 1.0)}, []NodeSample{sample("x", SampleCPU, 1.5)}, 0, 0, 0)
	if c.Measured != 1 || c.CPUSeconds != 0.5 || c.CPUMicrosPerOp != nil || c.OpsPerEntry != nil || c.FsyncsPerIncr != nil || c.Forwarded != nil || c.ForwardedShare != nil {
		t.Errorf("%+v", c)
	}
	b, _ := json.Marshal(c)
	if got := string(b); got != `{"nodes":[{"addr":"x","cpu_seconds":0.5}],"measured":1,"cpu_seconds":0.5}` {
		t.Errorf("JSON %s", got)
	}
	var text bytes.Buffer
	c.WriteText(&text)
	if got := text.String(); got != "node CPU: 0.500 s in all, no op acknowledged (1 node)\n  x: 0.500 s\n" {
		t.Errorf("text %q", got)
	}
}

// fixedScraper answers from a list of sample sets, one per Scrape, and
// remembers how many requests the store had seen at each scrape.
type fixedScraper struct {
	mu      sync.Mutex
	samples [][]NodeSample
	m       memTarget
	seen    []int
}

func (f *fixedScraper) Scrape(context.Context) []NodeSample {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.m.mu.Lock()
	f.seen = append(f.seen, *f.m.requests)
	f.m.mu.Unlock()
	s := f.samples[0]
	f.samples = f.samples[1:]
	return s
}

// Execute scrapes the nodes right before and right after the load, never
// around the verification's reads, and puts the cost in both reports.
func TestExecuteNodeCost(t *testing.T) {
	for _, asJSON := range []bool{true, false} {
		m := newMem()
		f := &fixedScraper{m: m, samples: [][]NodeSample{
			{sample("n1", SampleCPU, 1.0, SampleForwarded, 10.0)}, {sample("n1", SampleCPU, 1.125, SampleForwarded, 53.0)},
		}}
		b := Bench{Config: Config{Clients: 2, Requests: 250, Counter: "c"}, JSON: asJSON, Verify: true, Nodes: f, Route: "leader"}
		var out bytes.Buffer
		read := func(ctx context.Context, names []string) (map[string]int64, error) { return ReadAll(ctx, m, names) }
		if err := b.Execute(context.Background(), &out, func(int) Target { return m }, read); err != nil {
			t.Fatalf("execute: %v\n%s", err, out.String())
		}
		if len(f.seen) != 2 || f.seen[0] != 0 || f.seen[1] != 250 {
			t.Errorf("scraped when the store had seen %v requests, want before (0) and after (250) the load", f.seen)
		}
		// The store refuses or loses the answer of 78 of the 250 requests
		// (see memTarget): 0.125 s of CPU over 172 acknowledged ops, and
		// 43 forwarded of the 172 requests answered.
		if asJSON {
			var rep Report
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("not JSON: %v: %s", err, out.String())
			}
			if rep.Ops != 172 || rep.Requests != 172 || rep.NodeCost == nil || val(rep.NodeCost.CPUMicrosPerOp) != 0.125e6/172 ||
				val(rep.NodeCost.ForwardedShare) != 0.25 || rep.Route != "leader" {
				t.Errorf("%d ops, %d requests, route %q, node cost %+v", rep.Ops, rep.Requests, rep.Route, rep.NodeCost)
			}
		} else if !strings.Contains(out.String(), "\nnode CPU: 726.7 µs per op, 0.125 s in all (1 node)\n  n1: 726.7 µs per op (0.125 s)\n"+
			"43 requests forwarded between nodes (25.0% of requests)\n") {
			t.Errorf("text report:\n%s", out.String())
		}
	}
}

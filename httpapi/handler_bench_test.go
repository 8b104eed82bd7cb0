package httpapi_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"tally/httpapi"
	"tally/internal/testcluster"
	"tally/node"
)

// benchNode starts a one-node cluster (8 shards, raft logs on disk as in
// production) and waits until it serves; h is the API's handler, to drive
// it without a network.
func benchNode(b *testing.B) (n *node.Node, h http.Handler) {
	b.Helper()
	n = testcluster.StartNode(b, node.Config{
		ID: "n1", DataDir: b.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0",
		BootstrapExpect: 1, Shards: 8, Logger: slog.New(slog.DiscardHandler), BalanceInterval: -1,
	})
	h = httpapi.Handler(n)
	deadline := time.Now().Add(60 * time.Second)
	for {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/readyz", nil))
		if w.Code == http.StatusOK {
			return n, h
		}
		if time.Now().After(deadline) {
			b.Fatalf("node not ready after 60s: %d %s", w.Code, w.Body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// entryOps reads the node's tally_raft_entry_ops sum and count from
// /metrics: ops and raft entries proposed so far.
func entryOps(b *testing.B, h http.Handler) (ops, entries float64) {
	b.Helper()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, line := range strings.Split(w.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, "tally_raft_entry_ops_sum "); ok {
			fmt.Sscan(v, &ops)
		}
		if v, ok := strings.CutPrefix(line, "tally_raft_entry_ops_count "); ok {
			fmt.Sscan(v, &entries)
		}
	}
	return ops, entries
}

// reportOpsPerEntry reports how many ops each raft entry carried since
// the (ops, entries) mark: group commit at work.
func reportOpsPerEntry(b *testing.B, h http.Handler, ops0, entries0 float64) {
	ops, entries := entryOps(b, h)
	if entries > entries0 {
		b.ReportMetric((ops-ops0)/(entries-entries0), "ops/entry")
	}
}

// BenchmarkHTTPIncr: one increment per request through the node's whole
// HTTP stack (router, middleware, JSON, group commit, raft with fsync'd
// log, apply). "handler" calls the handler in-process, so the figure
// excludes the network and net/http's server (allocs/op includes building
// each request and recorder, about 10 allocations); "loopback" is a real
// keep-alive client over 127.0.0.1.
func BenchmarkHTTPIncr(b *testing.B) {
	n, h := benchNode(b)
	b.Run("handler", func(b *testing.B) {
		o, e := entryOps(b, h)
		defer func() { reportOpsPerEntry(b, h, o, e) }()
		b.ReportAllocs()
		b.SetParallelism(16) // callers enough for group commit to fill entries
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				w := httptest.NewRecorder()
				h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/counters/bench:hot/incr", nil))
				if w.Code != http.StatusOK {
					b.Errorf("%d %s", w.Code, w.Body)
					return
				}
			}
		})
	})
	b.Run("loopback", func(b *testing.B) {
		tr := &http.Transport{MaxIdleConnsPerHost: 64}
		defer tr.CloseIdleConnections()
		hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
		url := "http://" + n.HTTPAddr() + "/v1/counters/bench:hot/incr"
		o, e := entryOps(b, h)
		defer func() { reportOpsPerEntry(b, h, o, e) }()
		b.ReportAllocs()
		b.SetParallelism(16)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := hc.Post(url, "", nil)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	})
}

// BenchmarkHTTPBatch: POST /v1/batch of 16 increments, one counter or 16
// counters (spread over the shards), in-process; ns/op is per request.
func BenchmarkHTTPBatch(b *testing.B) {
	_, h := benchNode(b)
	for _, spread := range []bool{false, true} {
		ops := make([]string, 16)
		for i := range ops {
			name := "bench:hot"
			if spread {
				name = fmt.Sprintf("bench:%d", i)
			}
			ops[i] = fmt.Sprintf(`{"name":%q,"delta":1}`, name)
		}
		body := []byte(`{"ops":[` + strings.Join(ops, ",") + `]}`)
		label := map[bool]string{false: "one-counter", true: "16-counters"}[spread]
		b.Run(label, func(b *testing.B) {
			o, e := entryOps(b, h)
			defer func() { reportOpsPerEntry(b, h, o, e) }()
			b.ReportAllocs()
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					w := httptest.NewRecorder()
					h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/batch", bytes.NewReader(body)))
					if w.Code != http.StatusOK || bytes.Contains(w.Body.Bytes(), []byte(`"error"`)) {
						b.Errorf("%d %s", w.Code, w.Body)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*16)/b.Elapsed().Seconds(), "incr/s")
		})
	}
}

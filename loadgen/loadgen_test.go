package loadgen

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// TestRunCountsEveryRequest: against a fake node that fails every 10th
// request, the run must report exactly the successes per counter and the
// errors by code.
func TestRunCountsEveryRequest(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int64{}
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n%10 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":{"code":"no_leader","message":"x"}}`))
			return
		}
		name := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1/counters/"), "/incr")
		seen[name]++
		w.Write([]byte(`{"name":"x","value":1,"exact":true}`))
	}))
	defer srv.Close()
	res, err := Run(context.Background(), Config{Addrs: []string{srv.URL}, Clients: 8, Requests: 1000, Counter: "c", Counters: 4})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 900 || res.Errors != 100 || res.ByError["http 503 no_leader"] != 100 {
		t.Fatalf("requests %d errors %d %v; want 900, 100", res.Requests, res.Errors, res.ByError)
	}
	for name, v := range seen {
		if res.Acked[name] != v {
			t.Errorf("%s: acked %d, server counted %d", name, res.Acked[name], v)
		}
	}
	if res.Percentile(50) <= 0 || res.Percentile(99) < res.Percentile(50) {
		t.Errorf("percentiles: p50 %v p99 %v", res.Percentile(50), res.Percentile(99))
	}
	if !strings.Contains(res.Summary(), "900 requests") {
		t.Errorf("summary: %s", res.Summary())
	}
}

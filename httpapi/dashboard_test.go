package httpapi_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"tally/auth"
	"tally/internal/testcluster"
	"tally/node"
	"tally/tlsconf"
)

// TestDashboardOverTLSWithTokens: on a cluster with TLS and tokens the
// dashboard's page is open, its node scrape needs read, and with a read
// token it reads every member's own metrics over TLS (the node's CA)
// with the caller's token: the metric names the scraper looks for are
// the ones the node and this API register.
func TestDashboardOverTLSWithTokens(t *testing.T) {
	const readToken, writeToken = "read-token-0123456789", "write-token-0123456789"
	files, err := tlsconf.Generate(t.TempDir(), []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	store, err := tlsconf.Load(files)
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.Parse([]byte(readToken + " read\n" + writeToken + " write\n"))
	if err != nil {
		t.Fatal(err)
	}
	tc := testcluster.StartWith(t, 3, 2, func(c *node.Config) { c.TLS, c.Tokens = store, tokens })
	n1 := tc.Nodes[0]
	base, hc := testcluster.BaseURL(n1), testcluster.ClientFor(n1)
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	get := func(path, token string) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest("GET", base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}

	if resp, body := get("/ui/", ""); resp.StatusCode != 200 || !strings.Contains(body, "app.js") {
		t.Errorf("GET /ui/ without a token: %d %.200s", resp.StatusCode, body)
	}
	if resp, _ := get("/ui", ""); resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d to %q, want a redirect to /ui/", resp.StatusCode, resp.Header.Get("Location"))
	}
	if resp, body := get("/ui/api/nodes", ""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /ui/api/nodes without a token: %d %s", resp.StatusCode, body)
	}

	// Load on every node, so each has requests and latencies to show.
	for _, n := range tc.Nodes {
		for i := 0; i < 5; i++ {
			req, _ := http.NewRequest("POST", testcluster.BaseURL(n)+"/v1/counters/c/incr", nil)
			req.Header.Set("Authorization", "Bearer "+writeToken)
			resp, err := testcluster.ClientFor(n).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("incr on %s: %d", n.ID(), resp.StatusCode)
			}
		}
	}

	type stats struct {
		ID, URL, Error string
		Requests       float64
		RaftOps        float64 `json:"raft_ops"`
		At             int64
		Latency        *struct {
			LE     []float64
			Counts []float64
			Count  float64
		}
	}
	var last []stats
	testcluster.WaitFor(t, "every member scraped, with its increments", 60*time.Second, func() bool {
		resp, body := get("/ui/api/nodes", readToken)
		if resp.StatusCode != 200 {
			t.Logf("GET /ui/api/nodes: %d %s", resp.StatusCode, body)
			return false
		}
		var ans struct{ Nodes []stats }
		if err := json.Unmarshal([]byte(body), &ans); err != nil {
			t.Fatalf("GET /ui/api/nodes: %v: %s", err, body)
		}
		last = ans.Nodes
		if len(ans.Nodes) != 3 {
			return false
		}
		var ops float64
		for _, n := range ans.Nodes {
			if n.Error != "" || n.At == 0 || !strings.HasPrefix(n.URL, "https://") || n.Requests < 5 ||
				n.Latency == nil || n.Latency.Count < 5 || len(n.Latency.LE) == 0 {
				return false
			}
			ops += n.RaftOps
		}
		// The 15 increments were proposed by the shard's leader.
		return ops >= 15
	})
	t.Logf("nodes: %+v", last)
}

package ui

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// fakeCluster is a Cluster over fixed members.
type fakeCluster struct {
	members []Member
	client  *http.Client
}

func (f fakeCluster) Members(context.Context) []Member { return f.members }
func (f fakeCluster) Client() *http.Client             { return f.client }

// metricsText is what a member serving 5 increments, 2 reads, a watch
// and some observation calls exposes (the names node/metrics.go and
// httpapi register).
const metricsText = `# HELP tally_http_requests_total HTTP requests by route and status code.
# TYPE tally_http_requests_total counter
tally_http_requests_total{code="200",route="/v1/counters/{name}/incr"} 4
tally_http_requests_total{code="503",route="/v1/counters/{name}/incr"} 1
tally_http_requests_total{code="200",route="/v1/counters/{name}"} 2
tally_http_requests_total{code="200",route="/v1/counters/{name}/watch"} 7
tally_http_requests_total{code="200",route="/v1/cluster"} 30
tally_http_requests_total{code="200",route="/metrics"} 40
# HELP tally_http_request_duration_seconds Time from a request's routing to its handler's return, by route.
# TYPE tally_http_request_duration_seconds histogram
tally_http_request_duration_seconds_bucket{route="/v1/counters/{name}/incr",le="0.001"} 1
tally_http_request_duration_seconds_bucket{route="/v1/counters/{name}/incr",le="0.01"} 4
tally_http_request_duration_seconds_bucket{route="/v1/counters/{name}/incr",le="+Inf"} 5
tally_http_request_duration_seconds_sum{route="/v1/counters/{name}/incr"} 0.5
tally_http_request_duration_seconds_count{route="/v1/counters/{name}/incr"} 5
tally_http_request_duration_seconds_bucket{route="/v1/counters/{name}",le="0.001"} 2
tally_http_request_duration_seconds_bucket{route="/v1/counters/{name}",le="0.01"} 2
tally_http_request_duration_seconds_bucket{route="/v1/counters/{name}",le="+Inf"} 2
tally_http_request_duration_seconds_sum{route="/v1/counters/{name}"} 0.001
tally_http_request_duration_seconds_count{route="/v1/counters/{name}"} 2
tally_http_request_duration_seconds_bucket{route="/v1/counters/{name}/watch",le="0.001"} 0
tally_http_request_duration_seconds_bucket{route="/v1/counters/{name}/watch",le="0.01"} 0
tally_http_request_duration_seconds_bucket{route="/v1/counters/{name}/watch",le="+Inf"} 7
tally_http_request_duration_seconds_sum{route="/v1/counters/{name}/watch"} 700
tally_http_request_duration_seconds_count{route="/v1/counters/{name}/watch"} 7
# TYPE tally_raft_entry_ops histogram
tally_raft_entry_ops_bucket{le="1"} 2
tally_raft_entry_ops_bucket{le="+Inf"} 3
tally_raft_entry_ops_sum 9
tally_raft_entry_ops_count 3
# TYPE tally_shards_leading gauge
tally_shards_leading 2
# TYPE tally_forwarded_in_total counter
tally_forwarded_in_total 6
# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1.25
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes 5e+07
`

const hotText = `{"node":"%s","auto_split":true,"threshold":1000,"sustain_s":5,"split_to":4,
"hot":[{"name":"views:%s","rate":%d},{"name":"shared","rate":%d}],
"splits":[{"name":"big:%s","to":4,"split":4,"reason":"auto","at":"2026-01-02T03:04:0%dZ"}],
"known":{"big:%s":{"split":4,"since":"2026-01-02T03:04:05Z"},"shared-split":{"split":%d,"since":"2026-01-02T03:04:05Z"}}}`

// member is a fake member: its /metrics and /v1/hot, and the
// Authorization header of each request it got.
type member struct {
	id  string
	srv *httptest.Server

	mu    sync.Mutex
	authz []string
}

func newMember(t *testing.T, id string, k int, need string) *member {
	m := &member{id: id}
	m.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		m.authz = append(m.authz, r.Header.Get("Authorization"))
		m.mu.Unlock()
		if need != "" && r.Header.Get("Authorization") != need {
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"code":"unauthorized","message":"a valid token is needed"}}`)
			return
		}
		switch r.URL.Path {
		case "/metrics":
			w.Header().Set("Content-Type", "text/plain; version=0.0.4")
			io.WriteString(w, metricsText)
		case "/v1/hot":
			fmt.Fprintf(w, hotText, id, id, 100*k, 10*k, id, k, id, k)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *member) seen() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.authz...)
}

func getNodes(t *testing.T, h http.Handler, authz string) nodesAnswer {
	t.Helper()
	req := httptest.NewRequest("GET", "/api/nodes", nil)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /api/nodes: %d %s", rec.Code, rec.Body)
	}
	var ans nodesAnswer
	if err := json.Unmarshal(rec.Body.Bytes(), &ans); err != nil {
		t.Fatalf("GET /api/nodes: %v\n%s", err, rec.Body)
	}
	return ans
}

// TestNodesScrapesEveryMember: each member's metrics are read and
// summed over the counter operation routes only (no watch, no
// observation calls), and the members' hot reports are merged.
func TestNodesScrapesEveryMember(t *testing.T) {
	var members []Member
	for i, id := range []string{"n1", "n2", "n3"} {
		m := newMember(t, id, i+1, "")
		members = append(members, Member{ID: id, URL: m.srv.URL, State: "active", Health: "alive", Verified: true})
	}
	h := Handler(fakeCluster{members: members, client: http.DefaultClient}, slog.New(slog.DiscardHandler))
	ans := getNodes(t, h, "")
	if len(ans.Nodes) != 3 {
		t.Fatalf("%d nodes, want 3: %+v", len(ans.Nodes), ans.Nodes)
	}
	for i, n := range ans.Nodes {
		if n.ID != members[i].ID || n.URL != members[i].URL || n.State != "active" || n.Health != "alive" {
			t.Errorf("node %d is %+v, want member %+v", i, n, members[i])
		}
		if n.Error != "" || n.HotError != "" {
			t.Errorf("%s: errors %q, %q", n.ID, n.Error, n.HotError)
		}
		if n.At == 0 {
			t.Errorf("%s: no scrape time", n.ID)
		}
		// 5 increments and 2 reads; 1 increment got a 503.
		if n.Requests != 7 || n.Errors != 1 {
			t.Errorf("%s: requests %v errors %v, want 7 and 1", n.ID, n.Requests, n.Errors)
		}
		want := histogram{LE: []float64{0.001, 0.01}, Counts: []float64{3, 6}, Count: 7, Sum: 0.501}
		if l := n.Latency; l == nil || fmt.Sprint(l.LE) != fmt.Sprint(want.LE) || fmt.Sprint(l.Counts) != fmt.Sprint(want.Counts) ||
			l.Count != want.Count || fmt.Sprintf("%.3f", l.Sum) != "0.501" {
			t.Errorf("%s: latency %+v, want %+v", n.ID, n.Latency, want)
		}
		if n.RaftOps != 9 || n.RaftEntries != 3 || n.ShardsLeading != 2 || n.ForwardedIn != 6 || n.CPUSeconds != 1.25 || n.RSSBytes != 5e7 {
			t.Errorf("%s: %+v", n.ID, n)
		}
	}
	// Each member tracks its own counters; "shared" is seen by all three,
	// highest (n3's) first.
	if len(ans.Hot) != 4 || ans.Hot[0] != (hotRate{"views:n3", 300, "n3"}) || ans.Hot[3] != (hotRate{"shared", 30, "n3"}) {
		t.Errorf("hot %+v", ans.Hot)
	}
	if ans.SplitsTotal != 4 || len(ans.Splits) != 4 || ans.Splits[0].Name != "big:n1" || ans.Splits[3].Name != "shared-split" || ans.Splits[3].Split != 3 {
		t.Errorf("splits %+v", ans.Splits)
	}
	if len(ans.SplitEvents) != 3 || ans.SplitEvents[0].Node != "n3" || ans.SplitEvents[2].Node != "n1" {
		t.Errorf("split events (newest first) %+v", ans.SplitEvents)
	}
	if a := ans.AutoSplit; a == nil || !a.Enabled || a.Threshold != 1000 || a.SplitTo != 4 {
		t.Errorf("auto split %+v", a)
	}
}

// TestNodesForwardsAuthorization: the caller's token goes with every
// scrape (members check it like any request); without it the members
// refuse, and each says so in its entry.
func TestNodesForwardsAuthorization(t *testing.T) {
	const authz = "Bearer read-token-0123456789"
	a, b := newMember(t, "n1", 1, authz), newMember(t, "n2", 2, authz)
	h := Handler(fakeCluster{members: []Member{{ID: "n1", URL: a.srv.URL, State: "active", Health: "alive", Verified: true}, {ID: "n2", URL: b.srv.URL, State: "active", Health: "alive", Verified: true}}, client: http.DefaultClient}, nil)
	ans := getNodes(t, h, authz)
	for _, n := range ans.Nodes {
		if n.Error != "" || n.HotError != "" || n.Requests != 7 {
			t.Errorf("%s with the token: %+v", n.ID, n)
		}
	}
	for _, m := range []*member{a, b} {
		seen := m.seen()
		if len(seen) != 2 || seen[0] != authz || seen[1] != authz {
			t.Errorf("%s got Authorization %q, want %q on both requests", m.id, seen, authz)
		}
	}

	ans = getNodes(t, h, "")
	for _, n := range ans.Nodes {
		if !strings.Contains(n.Error, "401") || !strings.Contains(n.Error, "a valid token is needed") || n.At != 0 || n.Requests != 0 {
			t.Errorf("%s without a token: %+v", n.ID, n)
		}
	}
}

// TestNodesMemberDown: a member that refuses connections, one that
// hangs and one with no address each get an error entry; the page
// still gets the others, and within the scrape timeout.
func TestNodesMemberDown(t *testing.T) {
	up := newMember(t, "n1", 1, "")
	// A port nothing listens on.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String()
	l.Close()
	// A member that accepts and never answers.
	stuck := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-stuck:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(stuck); hang.Close() })

	const timeout = 300 * time.Millisecond
	h := newHandler(fakeCluster{members: []Member{
		{ID: "n1", URL: up.srv.URL, State: "active", Health: "alive"},
		{ID: "n2", URL: down, State: "active", Health: "alive"},
		{ID: "n3", URL: hang.URL, State: "active", Health: "alive"},
		{ID: "n4", State: "active", Health: "alive"},
	}, client: http.DefaultClient}, nil, timeout)
	start := time.Now()
	ans := getNodes(t, h, "")
	if took := time.Since(start); took > timeout+2*time.Second {
		t.Errorf("the answer took %v; each scrape is bounded by %v", took, timeout)
	}
	if len(ans.Nodes) != 4 {
		t.Fatalf("%d nodes, want 4", len(ans.Nodes))
	}
	if n := ans.Nodes[0]; n.Error != "" || n.Requests != 7 {
		t.Errorf("n1 is up: %+v", n)
	}
	if n := ans.Nodes[1]; !strings.Contains(n.Error, "refused") || n.HotError == "" || n.At != 0 {
		t.Errorf("n2 is down: %+v", n)
	}
	if n := ans.Nodes[2]; !strings.Contains(n.Error, "deadline") || n.At != 0 {
		t.Errorf("n3 hangs: %+v", n)
	}
	if n := ans.Nodes[3]; n.Error != "no HTTP address known" {
		t.Errorf("n4 has no address: %+v", n)
	}
	if len(ans.Hot) != 2 || ans.Hot[0].Node != "n1" {
		t.Errorf("hot should hold n1's counters: %+v", ans.Hot)
	}
}

// TestNodesReadsARealRegistry: what client_golang serves for the metric
// names and types tally registers is what the scraper reads (protobuf
// or text, as the member answers).
func TestNodesReadsARealRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricRequests}, []string{"route", "code"})
	dur := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: metricDuration, Buckets: []float64{0.001, 0.01, 0.1}}, []string{"route"})
	ops := prometheus.NewHistogram(prometheus.HistogramOpts{Name: metricEntryOps, Buckets: prometheus.ExponentialBuckets(1, 2, 4)})
	reg.MustRegister(reqs, dur, ops)
	reqs.WithLabelValues("/v1/batch", "200").Add(3)
	reqs.WithLabelValues("/v1/hot", "200").Add(100)
	for _, d := range []float64{0.0005, 0.005, 0.05} {
		dur.WithLabelValues("/v1/batch").Observe(d)
	}
	dur.WithLabelValues("/ui/api/nodes").Observe(0.5)
	ops.Observe(4)
	ops.Observe(2)
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/v1/hot", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, `{"hot":[],"splits":[],"known":{}}`) })
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	h := Handler(fakeCluster{members: []Member{{ID: "n1", URL: srv.URL, State: "active", Health: "alive", Verified: true}}, client: http.DefaultClient}, nil)
	n := getNodes(t, h, "").Nodes[0]
	if n.Error != "" || n.Requests != 3 || n.RaftOps != 6 || n.RaftEntries != 2 {
		t.Fatalf("%+v", n)
	}
	if l := n.Latency; l == nil || fmt.Sprint(l.LE, l.Counts, l.Count) != "[0.001 0.01 0.1] [1 2 3] 3" {
		t.Errorf("latency %+v", n.Latency)
	}
}

func TestStaticPage(t *testing.T) {
	h := Handler(fakeCluster{}, nil)
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", path, nil)
		h.ServeHTTP(rec, req)
		return rec
	}
	for path, want := range map[string]string{"/": "text/html", "/app.js": "text/javascript", "/style.css": "text/css"} {
		rec := get(path)
		if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), want) {
			t.Errorf("GET %s: %d %q, want 200 %s", path, rec.Code, rec.Header().Get("Content-Type"), want)
		}
		if !strings.Contains(rec.Header().Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("GET %s: no content security policy", path)
		}
		if !Public(path) {
			t.Errorf("Public(%q) = false for a static file", path)
		}
	}
	if rec := get("/"); !strings.Contains(rec.Body.String(), `<script src="app.js"`) {
		t.Errorf("GET /: not the page:\n%s", rec.Body)
	}
	for _, path := range []string{"/nothing.js", "/api", "/index.html"} {
		if rec := get(path); rec.Code == 200 {
			t.Errorf("GET %s: 200, want an error or a redirect", path)
		}
		if Public(path) {
			t.Errorf("Public(%q) = true", path)
		}
	}
	// Mounted at /ui, the router sees "/" for both /ui and /ui/; the
	// first must become the second so that relative URLs work.
	mount := chi.NewRouter()
	mount.Mount("/ui", h)
	rec := httptest.NewRecorder()
	mount.ServeHTTP(rec, httptest.NewRequest("GET", "/ui", nil))
	if rec.Code != http.StatusMovedPermanently || rec.Header().Get("Location") != "/ui/" {
		t.Errorf("GET /ui: %d to %q, want a redirect to /ui/", rec.Code, rec.Header().Get("Location"))
	}
}

// TestNodesBoundsScrapesInFlight: however many members and page
// requests, at most maxParallel members are scraped at once (two
// requests each: /metrics and /v1/hot).
func TestNodesBoundsScrapesInFlight(t *testing.T) {
	var mu sync.Mutex
	inFlight, peak := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		peak = max(peak, inFlight)
		mu.Unlock()
		defer func() {
			mu.Lock()
			inFlight--
			mu.Unlock()
		}()
		// Long enough for scrapes to overlap.
		time.Sleep(30 * time.Millisecond)
		if r.URL.Path == "/metrics" {
			io.WriteString(w, metricsText)
			return
		}
		io.WriteString(w, `{"hot":[],"splits":[],"known":{}}`)
	}))
	t.Cleanup(srv.Close)
	var members []Member
	for i := 0; i < 3*maxParallel; i++ {
		members = append(members, Member{ID: fmt.Sprintf("n%d", i), URL: srv.URL, State: "active", Health: "alive", Verified: true})
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 4 * maxParallel}
	t.Cleanup(tr.CloseIdleConnections)
	h := Handler(fakeCluster{members: members, client: &http.Client{Transport: tr}}, nil)
	var wg sync.WaitGroup
	for p := 0; p < 3; p++ {
		wg.Go(func() {
			// Not getNodes: a goroutine other than the test's must not
			// end the test.
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/nodes", nil))
			var ans nodesAnswer
			if err := json.Unmarshal(rec.Body.Bytes(), &ans); rec.Code != 200 || err != nil || len(ans.Nodes) != len(members) {
				t.Errorf("GET /api/nodes: %d %v %.200s", rec.Code, err, rec.Body)
			}
			for _, n := range ans.Nodes {
				if n.Error != "" || n.Requests != 7 {
					t.Errorf("%s: %+v", n.ID, n)
				}
			}
		})
	}
	wg.Wait()
	if peak > 2*maxParallel {
		t.Errorf("%d requests in flight at once, want at most %d", peak, 2*maxParallel)
	}
	t.Logf("peak %d requests in flight", peak)
}

// TestNodesAsksOnlyServingVerifiedMembers: a dead, left or removed member
// is not asked at all (its address may be anyone's by now), and a member
// that has not proved itself with the cluster's CA is asked without the
// viewer's token.
func TestNodesAsksOnlyServingVerifiedMembers(t *testing.T) {
	const authz = "Bearer read-token-0123456789"
	ok, unproved := newMember(t, "n1", 1, ""), newMember(t, "n2", 2, "")
	dead, left := newMember(t, "n3", 3, ""), newMember(t, "n4", 4, "")
	h := Handler(fakeCluster{members: []Member{
		{ID: "n1", URL: ok.srv.URL, State: "active", Health: "alive", Verified: true},
		{ID: "n2", URL: unproved.srv.URL, State: "active", Health: "alive"},
		{ID: "n3", URL: dead.srv.URL, State: "active", Health: "dead", Verified: true},
		{ID: "n4", URL: left.srv.URL, State: "left", Health: "alive", Verified: true},
	}, client: http.DefaultClient}, nil)
	ans := getNodes(t, h, authz)
	if s := ok.seen(); len(s) != 2 || s[0] != authz {
		t.Errorf("the verified member got Authorization %q", s)
	}
	if s := unproved.seen(); len(s) != 2 || s[0] != "" || s[1] != "" {
		t.Errorf("an unverified member got Authorization %q, want none", s)
	}
	for i, m := range []*member{dead, left} {
		if s := m.seen(); len(s) != 0 {
			t.Errorf("%s was asked (%d requests)", m.id, len(s))
		}
		if e := ans.Nodes[2+i].Error; !strings.Contains(e, "not asked") {
			t.Errorf("%s: error %q", m.id, e)
		}
	}
}

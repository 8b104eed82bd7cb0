package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"tally/route"
)

// seen is one request as the fake server received it.
type seen struct {
	method, path, query, key, ctype, body string
}

// fake is an httptest server whose handler gets the 0-based index of each
// request, and which records every request it sees but the routing
// table's: those it answers 404, as a node too old to route by would, so
// the client falls back to its addresses.
type fake struct {
	*httptest.Server
	mu      sync.Mutex
	reqs    []seen
	cluster string // the routing table's answer; "" answers 404
	fetches int    // the routing table's requests
}

// setCluster makes f answer the routing table with a /v1/cluster answer.
func (f *fake) setCluster(answer string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cluster = answer
}

func (f *fake) tableFetches() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fetches
}

func newFake(t *testing.T, h func(n int, w http.ResponseWriter, r *http.Request)) *fake {
	t.Helper()
	f := &fake{}
	f.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("User-Agent") == route.UserAgent {
			f.mu.Lock()
			f.fetches++
			answer := f.cluster
			f.mu.Unlock()
			if answer == "" {
				reply(w, 404, `{"error":{"code":"not_found","message":"no such route"}}`)
			} else {
				reply(w, 200, answer)
			}
			return
		}
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		n := len(f.reqs)
		f.reqs = append(f.reqs, seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery,
			r.Header.Get("Idempotency-Key"), r.Header.Get("Content-Type"), string(body)})
		f.mu.Unlock()
		h(n, w, r)
	}))
	t.Cleanup(f.Close)
	return f
}

func (f *fake) requests() []seen {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]seen(nil), f.reqs...)
}

func (f *fake) addr() string { return strings.TrimPrefix(f.URL, "http://") }

func reply(w http.ResponseWriter, status int, v string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	io.WriteString(w, v)
}

// hangUp closes the connection without an answer, after the request (body
// included) was read: the write may have been applied.
func hangUp(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	conn.Close()
}

// deadAddr returns an address nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	l.Close()
	return a
}

var ctx = context.Background()

func TestRequestShapes(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost:
			reply(w, 200, `{"name":"a b%c?","value":41,"exact":true}`)
		case r.URL.Path == "/v1/counters":
			reply(w, 200, `{"counters":[]}`)
		default:
			reply(w, 200, `{"name":"a b%c?","value":41,"shards":[3]}`)
		}
	})
	c := New([]string{f.URL + "/"}) // a scheme and a trailing slash are accepted
	name := "a b%c?"
	res, err := c.Incr(ctx, name, 5)
	if err != nil || res != (Result{Name: name, Value: 41, Exact: true}) {
		t.Fatalf("Incr = %+v, %v", res, err)
	}
	if _, err := c.Decr(ctx, name, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := c.IncrWithKey(ctx, name, 2, "my-key-1"); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, name, Stale)
	if err != nil || got.Value != 41 || len(got.Shards) != 1 || got.Shards[0] != 3 {
		t.Fatalf("Get = %+v, %v", got, err)
	}
	if _, err := c.Get(ctx, name, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := c.MultiGet(ctx, []string{"z", "a&b"}, Linearizable); err != nil {
		t.Fatal(err)
	}

	reqs := f.requests()
	want := []seen{
		{method: "POST", path: "/v1/counters/a%20b%25c%3F/incr", ctype: "application/json", body: `{"delta":5}`},
		{method: "POST", path: "/v1/counters/a%20b%25c%3F/decr", ctype: "application/json", body: `{"delta":1}`},
		{method: "POST", path: "/v1/counters/a%20b%25c%3F/incr", ctype: "application/json", body: `{"delta":2}`, key: "my-key-1"},
		{method: "GET", path: "/v1/counters/a%20b%25c%3F", query: "consistency=stale"},
		{method: "GET", path: "/v1/counters/a%20b%25c%3F"},
		{method: "GET", path: "/v1/counters", query: "consistency=linearizable&name=z&name=a%26b"},
	}
	if len(reqs) != len(want) {
		t.Fatalf("got %d requests, want %d: %+v", len(reqs), len(want), reqs)
	}
	generated := regexp.MustCompile(`^[0-9a-f]{32}$`)
	for i, w := range want {
		g := reqs[i]
		if i < 2 { // generated keys: check the shape, then compare the rest
			if !generated.MatchString(g.key) {
				t.Errorf("request %d: key %q is not 16 random bytes in hex", i, g.key)
			}
			g.key = ""
		}
		if g != w {
			t.Errorf("request %d:\n got %+v\nwant %+v", i, g, w)
		}
	}
	if reqs[0].key == reqs[1].key {
		t.Errorf("two calls shared the key %q", reqs[0].key)
	}
}

func TestLocalChecks(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) { reply(w, 200, `{}`) })
	c := New([]string{f.addr()})
	for _, tc := range []struct {
		err  error
		code string
	}{
		{func() error { _, err := c.Incr(ctx, "", 1); return err }(), "bad_name"},
		{func() error { _, err := c.Get(ctx, "a/b", ""); return err }(), "bad_name"},
		{func() error { _, err := c.IncrWithKey(ctx, "x", 1, ""); return err }(), "bad_key"},
		{func() error { _, err := c.IncrWithKey(ctx, "x", 1, "line\nbreak"); return err }(), "bad_key"},
		{func() error { _, err := c.DecrWithKey(ctx, "x", 1, strings.Repeat("k", 257)); return err }(), "bad_key"},
	} {
		var ae *APIError
		if !errors.As(tc.err, &ae) || ae.Status != 400 || ae.Code != tc.code {
			t.Errorf("err = %v, want a 400 %s", tc.err, tc.code)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("%d requests sent for invalid input", n)
	}
}

func TestRetry503ThenSuccess(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 0:
			reply(w, 503, `{"error":{"code":"no_leader","message":"shard 3 has no leader"}}`)
		case 1:
			reply(w, 503, `{"error":{"code":"outcome_unknown","message":"leadership lost"}}`)
		default:
			reply(w, 200, `{"name":"x","value":7,"exact":true}`)
		}
	})
	c := New([]string{f.addr()})
	res, err := c.Incr(ctx, "x", 1)
	if err != nil || res.Value != 7 {
		t.Fatalf("Incr = %+v, %v", res, err)
	}
	assertOneKey(t, f.requests(), 3)
}

func TestRetryAfterConnectionClosedMidRequest(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 0 {
			hangUp(w)
			return
		}
		reply(w, 200, `{"name":"x","value":1,"exact":true}`)
	})
	c := New([]string{f.addr()})
	res, err := c.IncrWithKey(ctx, "x", 1, "k1")
	if err != nil || res.Value != 1 || IsOutcomeUnknown(err) {
		t.Fatalf("IncrWithKey = %+v, %v", res, err)
	}
	reqs := assertOneKey(t, f.requests(), 2)
	if reqs[1].body != `{"delta":1}` {
		t.Errorf("retry body = %q", reqs[1].body)
	}
}

// assertOneKey checks that n attempts arrived, all with the same key.
func assertOneKey(t *testing.T, reqs []seen, n int) []seen {
	t.Helper()
	if len(reqs) != n {
		t.Fatalf("%d attempts, want %d", len(reqs), n)
	}
	for _, r := range reqs {
		if r.key == "" || r.key != reqs[0].key {
			t.Fatalf("keys differ across retries: %+v", reqs)
		}
	}
	return reqs
}

func TestNoRetryOn4xx(t *testing.T) {
	for _, tc := range []struct {
		status int
		body   string
		code   string
		value  *int64
	}{
		{400, `{"error":{"code":"bad_delta","message":"delta must not be 0"}}`, "bad_delta", nil},
		{409, `{"error":{"code":"overflow","message":"would overflow","value":9223372036854775807}}`, "overflow", ptr(9223372036854775807)},
		{422, `{"error":{"code":"key_reused","message":"key used with another body"}}`, "key_reused", nil},
		{404, `not json`, "http_404", nil},
	} {
		f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) { reply(w, tc.status, tc.body) })
		c := New([]string{f.addr()})
		_, err := c.Incr(ctx, "x", 1)
		var ae *APIError
		if !errors.As(err, &ae) {
			t.Fatalf("%d: err = %v, want an *APIError", tc.status, err)
		}
		if ae.Status != tc.status || ae.Code != tc.code || ae.Message == "" {
			t.Errorf("%d: got %+v", tc.status, ae)
		}
		if (ae.Value == nil) != (tc.value == nil) || (ae.Value != nil && *ae.Value != *tc.value) {
			t.Errorf("%d: Value = %v, want %v", tc.status, ae.Value, tc.value)
		}
		if IsOutcomeUnknown(err) {
			t.Errorf("%d: outcome unknown", tc.status)
		}
		if n := len(f.requests()); n != 1 {
			t.Errorf("%d: %d attempts, want 1", tc.status, n)
		}
	}
}

func ptr(v int64) *int64 { return &v }

func TestRotation(t *testing.T) {
	ok := func(n int, w http.ResponseWriter, r *http.Request) {
		reply(w, 200, `{"name":"x","value":1,"exact":true}`)
	}
	t.Run("dead and live", func(t *testing.T) {
		live := newFake(t, ok)
		c := New([]string{deadAddr(t), live.addr()})
		for i := 0; i < 4; i++ {
			if _, err := c.Incr(ctx, "x", 1); err != nil {
				t.Fatal(err)
			}
		}
		if n := len(live.requests()); n != 4 {
			t.Errorf("live node saw %d requests, want 4", n)
		}
	})
	t.Run("spread", func(t *testing.T) {
		a, b := newFake(t, ok), newFake(t, ok)
		c := New([]string{a.addr(), b.addr()})
		for i := 0; i < 4; i++ {
			if _, err := c.Get(ctx, "x", ""); err != nil {
				t.Fatal(err)
			}
		}
		if na, nb := len(a.requests()), len(b.requests()); na != 2 || nb != 2 {
			t.Errorf("requests per node = %d, %d; want 2, 2", na, nb)
		}
	})
}

func TestDeadlineExhausted(t *testing.T) {
	hang := func(n int, w http.ResponseWriter, r *http.Request) { hangUp(w) }
	unknown := func(n int, w http.ResponseWriter, r *http.Request) {
		reply(w, 503, `{"error":{"code":"outcome_unknown","message":"timed out"}}`)
	}
	noLeader := func(n int, w http.ResponseWriter, r *http.Request) {
		reply(w, 503, `{"error":{"code":"no_leader","message":"election"}}`)
	}
	for _, tc := range []struct {
		name    string
		handler func(int, http.ResponseWriter, *http.Request) // nil: a dead address
		write   bool
		unknown bool
		code    string
	}{
		{"write, connection closed", hang, true, true, ""},
		{"write, outcome_unknown", unknown, true, true, "outcome_unknown"},
		{"write, no_leader", noLeader, true, false, "no_leader"},
		{"write, never connected", nil, true, false, ""},
		{"read, connection closed", hang, false, false, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := deadAddr(t)
			var f *fake
			if tc.handler != nil {
				f = newFake(t, tc.handler)
				addr = f.addr()
			}
			c := New([]string{addr}, WithRetryDeadline(150*time.Millisecond))
			var err error
			if tc.write {
				_, err = c.Incr(ctx, "x", 1)
			} else {
				_, err = c.Get(ctx, "x", "")
			}
			if err == nil {
				t.Fatal("no error")
			}
			if IsOutcomeUnknown(err) != tc.unknown {
				t.Errorf("IsOutcomeUnknown(%v) = %v, want %v", err, !tc.unknown, tc.unknown)
			}
			var ae *APIError
			if tc.code != "" && (!errors.As(err, &ae) || ae.Code != tc.code) {
				t.Errorf("err = %v, want code %s", err, tc.code)
			}
			if f != nil && tc.write {
				if reqs := f.requests(); len(reqs) < 2 {
					t.Errorf("%d attempts, want retries", len(reqs))
				} else {
					assertOneKey(t, reqs, len(reqs))
				}
			}
		})
	}
}

func TestRetryAfterCappedToDeadline(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "30")
		reply(w, 503, `{"error":{"code":"unavailable","message":"no quorum"}}`)
	})
	c := New([]string{f.addr()}, WithRetryDeadline(200*time.Millisecond))
	start := time.Now()
	_, err := c.Get(ctx, "x", "")
	if err == nil {
		t.Fatal("no error")
	}
	// The 30 s hint cannot be honoured within 200 ms, so the call ends at
	// once rather than sleeping past its deadline.
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("call took %v", d)
	}
	if n := len(f.requests()); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
}

func TestContextCancelStopsRetries(t *testing.T) {
	cctx, cancel := context.WithCancel(ctx)
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		if n == 2 {
			cancel()
		}
		reply(w, 503, `{"error":{"code":"no_leader","message":"election"}}`)
	})
	c := New([]string{f.addr()}, WithRetryDeadline(time.Hour))
	if _, err := c.Get(cctx, "x", ""); err == nil {
		t.Fatal("no error")
	}
	if n := len(f.requests()); n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
}

func TestMultiGetAndCluster(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/counters":
			reply(w, 200, `{"counters":[{"name":"a","value":1},{"name":"b","value":-2}]}`)
		case "/v1/cluster":
			reply(w, 200, `{"node":"n1","members":[{"id":"n1","http":"127.0.0.1:7070","state":"alive"}],
				"shards":[{"id":0,"leader":"n2","replicas":["n1","n2","n3"],"applied_index":123},{"id":1,"leader":"","replicas":["n1"],"applied_index":0}]}`)
		}
	})
	c := New([]string{f.addr()})
	cs, err := c.MultiGet(ctx, []string{"a", "b"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []Counter{{Name: "a", Value: 1}, {Name: "b", Value: -2}}; !equalJSON(cs, want) {
		t.Errorf("MultiGet = %+v", cs)
	}
	if cs, err := c.MultiGet(ctx, nil, ""); err != nil || cs != nil {
		t.Errorf("MultiGet(nil) = %v, %v", cs, err)
	}
	info, err := c.Cluster(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := ClusterInfo{
		Node:    "n1",
		Members: []Member{{ID: "n1", HTTP: "127.0.0.1:7070", State: "alive"}},
		Shards: []Shard{
			{ID: 0, Leader: "n2", Replicas: []string{"n1", "n2", "n3"}, AppliedIndex: 123},
			{ID: 1, Replicas: []string{"n1"}},
		},
	}
	if !equalJSON(info, want) {
		t.Errorf("Cluster = %+v", info)
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

func TestReady(t *testing.T) {
	ready := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) { reply(w, 200, `{"status":"ready"}`) })
	notReady := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) { reply(w, 503, `{"status":"not ready"}`) })
	if err := New([]string{ready.addr()}).Ready(ctx); err != nil {
		t.Errorf("Ready = %v", err)
	}
	err := New([]string{ready.addr(), notReady.addr()}).Ready(ctx)
	var ae *APIError
	if !errors.As(err, &ae) || ae.Status != 503 {
		t.Errorf("Ready = %v, want a 503", err)
	}
	if n := len(notReady.requests()); n != 1 {
		t.Errorf("Ready retried: %d requests", n)
	}
	if reqs := ready.requests(); reqs[0].path != "/readyz" {
		t.Errorf("path = %s", reqs[0].path)
	}
}

// TestResendOnReusedConnectionIsAmbiguous: net/http sends a request
// with an Idempotency-Key again by itself when a reused keep-alive
// connection drops it. The first sending may have counted, so a final
// answer that settles nothing (a 500) must still say the outcome is
// unknown.
func TestResendOnReusedConnectionIsAmbiguous(t *testing.T) {
	f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch n {
		case 0:
			reply(w, 200, `{"name":"x","value":1,"exact":true}`) // opens the connection the next request reuses
		case 1:
			hangUp(w)
		default:
			reply(w, 500, `{"error":{"code":"x","message":"y"}}`)
		}
	})
	c := New([]string{f.addr()}, WithoutRouting())
	if _, err := c.Get(ctx, "x", Linearizable); err != nil {
		t.Fatal(err)
	}
	_, err := c.Incr(ctx, "x", 1)
	if reqs := f.requests(); len(reqs) != 3 || reqs[1].key == "" || reqs[1].key != reqs[2].key {
		t.Fatalf("requests %+v: want a get, then the increment sent twice with one key", reqs)
	}
	if !IsOutcomeUnknown(err) {
		t.Fatalf("err = %v, IsOutcomeUnknown = false: the dropped first sending may have counted", err)
	}
}

func TestAmbiguityThenFinalAnswer(t *testing.T) {
	for _, tc := range []struct {
		status  int
		unknown bool
	}{
		{409, false}, // the key would have answered had the first attempt counted
		{500, true},  // settles nothing
	} {
		f := newFake(t, func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 0 {
				hangUp(w)
				return
			}
			reply(w, tc.status, `{"error":{"code":"x","message":"y"}}`)
		})
		_, err := New([]string{f.addr()}).Incr(ctx, "x", 1)
		var ae *APIError
		if !errors.As(err, &ae) || ae.Status != tc.status || IsOutcomeUnknown(err) != tc.unknown {
			t.Errorf("%d: err = %v, IsOutcomeUnknown = %v", tc.status, err, IsOutcomeUnknown(err))
		}
		assertOneKey(t, f.requests(), 2)
	}
}

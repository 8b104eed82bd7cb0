package httpapi_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"tally/internal/testcluster"
	"tally/node"
)

// TestAPIBadInput: every kind of bad request gets its documented 4xx JSON
// error and changes nothing.
func TestAPIBadInput(t *testing.T) {
	tc := testcluster.Start(t, 1, 2)
	base := "http://" + tc.Nodes[0].HTTPAddr()

	// A known state to compare against.
	if a := testcluster.Do(t, "POST", base+"/v1/counters/c/incr", `{"delta": 7}`, nil); a.Status != 200 || a.Body["value"] != 7.0 {
		t.Fatalf("setup incr: %d %v", a.Status, a.Body)
	}
	long := strings.Repeat("x", 300)
	cases := []struct {
		name, method, path, Body string
		hdr                      map[string]string
		Status                   int
		code                     string
	}{
		{"empty name", "POST", "/v1/counters//incr", "", nil, 400, "bad_name"},
		{"slash in name", "POST", "/v1/counters/a%2Fb/incr", "", nil, 400, "bad_name"},
		{"300-byte name", "POST", "/v1/counters/" + long + "/incr", "", nil, 400, "bad_name"},
		{"control byte", "POST", "/v1/counters/a%01b/incr", "", nil, 400, "bad_name"},
		{"invalid utf-8", "POST", "/v1/counters/a%ffb/incr", "", nil, 400, "bad_name"},
		{"non-integer delta", "POST", "/v1/counters/c/incr", `{"delta": 1.5}`, nil, 400, "bad_delta"},
		{"string delta", "POST", "/v1/counters/c/incr", `{"delta": "5"}`, nil, 400, "bad_delta"},
		{"exponent delta", "POST", "/v1/counters/c/incr", `{"delta": 1e3}`, nil, 400, "bad_delta"},
		{"null delta", "POST", "/v1/counters/c/incr", `{"delta": null}`, nil, 400, "bad_delta"},
		{"overflowing delta", "POST", "/v1/counters/c/incr", `{"delta": 9223372036854775808}`, nil, 400, "bad_delta"},
		{"decr of min int64", "POST", "/v1/counters/c/decr", `{"delta": -9223372036854775808}`, nil, 400, "bad_delta"},
		{"malformed json", "POST", "/v1/counters/c/incr", `{"delta": `, nil, 400, "bad_body"},
		{"not an object", "POST", "/v1/counters/c/incr", `[1]`, nil, 400, "bad_body"},
		{"unknown field", "POST", "/v1/counters/c/incr", `{"delat": 1}`, nil, 400, "bad_body"},
		{"trailing data", "POST", "/v1/counters/c/incr", `{"delta": 1} {"delta": 1}`, nil, 400, "bad_body"},
		{"bad idempotency key", "POST", "/v1/counters/c/incr", "", map[string]string{"Idempotency-Key": "has space"}, 400, "bad_key"},
		{"too long idempotency key", "POST", "/v1/counters/c/incr", "", map[string]string{"Idempotency-Key": long}, 400, "bad_key"},
		{"bad consistency", "GET", "/v1/counters/c?consistency=eventual", "", nil, 400, "bad_consistency"},
		{"multi-get without names", "GET", "/v1/counters", "", nil, 400, "bad_name"},
		{"multi-get bad name", "GET", "/v1/counters?name=a&name=", "", nil, 400, "bad_name"},
		{"multi-get too many", "GET", "/v1/counters?" + strings.Repeat("name=a&", 1001), "", nil, 400, "too_many_names"},
		{"min above max", "POST", "/v1/counters/c/incr", `{"min": 5, "max": 1}`, nil, 400, "bad_bounds"},
		{"non-integer min", "POST", "/v1/counters/c/incr", `{"min": "0"}`, nil, 400, "bad_bounds"},
		{"zero ttl", "POST", "/v1/counters/c/incr", `{"ttl_ms": 0}`, nil, 400, "bad_ttl"},
		{"negative ttl", "POST", "/v1/counters/c/incr", `{"ttl_ms": -5}`, nil, 400, "bad_ttl"},
		{"huge ttl", "POST", "/v1/counters/c/incr", `{"ttl_ms": 315360000001}`, nil, 400, "bad_ttl"},
		{"129-byte actor", "PUT", "/v1/counters/c/actors/" + strings.Repeat("a", 129), "", nil, 400, "bad_actor"},
		{"control byte actor", "PUT", "/v1/counters/c/actors/a%07", "", nil, 400, "bad_actor"},
		{"slash in actor", "DELETE", "/v1/counters/c/actors/a%2Fb", "", nil, 400, "bad_actor"},
		{"empty actor", "PUT", "/v1/counters/c/actors/", "", nil, 404, "not_found"},
		{"member bad consistency", "GET", "/v1/counters/c/actors/a?consistency=x", "", nil, 400, "bad_consistency"},
		{"unknown route", "GET", "/v1/nothing", "", nil, 404, "not_found"},
		{"unknown counter op", "POST", "/v1/counters/c/multiply", "", nil, 404, "not_found"},
		{"wrong method", "DELETE", "/v1/counters/c/incr", "", nil, 405, "method_not_allowed"},
	}
	for _, c := range cases {
		a := testcluster.Do(t, c.method, base+c.path, c.Body, c.hdr)
		if a.Status != c.Status || testcluster.ErrCode(a) != c.code {
			t.Errorf("%s: got %d %q (%v), want %d %q", c.name, a.Status, testcluster.ErrCode(a), a.Body, c.Status, c.code)
		}
		if m, _ := a.Body["error"].(map[string]any); m == nil || m["message"] == "" {
			t.Errorf("%s: error has no message: %v", c.name, a.Body)
		}
	}
	if a := testcluster.Do(t, "GET", base+"/v1/counters/c", "", nil); a.Body["value"] != 7.0 {
		t.Fatalf("bad requests changed the counter: %v", a.Body)
	}
	if a := testcluster.Do(t, "GET", base+"/v1/counters?name=a&name=b", "", nil); a.Status != 200 {
		t.Fatalf("names that look like nothing else still read: %d %v", a.Status, a.Body)
	}
}

// TestAPIOverflowAndKeys covers 409 overflow (state unchanged, current
// value reported), idempotent retries and 422 key reuse.
func TestAPIOverflowAndKeys(t *testing.T) {
	tc := testcluster.Start(t, 1, 2)
	base := "http://" + tc.Nodes[0].HTTPAddr()
	if a := testcluster.Do(t, "POST", base+"/v1/counters/big/incr", `{"delta": 9223372036854775807}`, nil); a.Status != 200 {
		t.Fatalf("max incr: %d %v", a.Status, a.Body)
	}
	a := testcluster.Do(t, "POST", base+"/v1/counters/big/incr", "", nil)
	if a.Status != 409 || testcluster.ErrCode(a) != "overflow" {
		t.Fatalf("overflow: %d %v", a.Status, a.Body)
	}
	if e := a.Body["error"].(map[string]any); e["value"] != 9.223372036854775807e18 {
		t.Fatalf("overflow testcluster.Answer lacks the current value: %v", a.Body)
	}

	key := map[string]string{"Idempotency-Key": "k-1"}
	first := testcluster.Do(t, "POST", base+"/v1/counters/k/incr", `{"delta": 3}`, key)
	again := testcluster.Do(t, "POST", base+"/v1/counters/k/incr", `{"delta": 3}`, key)
	if first.Status != 200 || again.Status != 200 || first.Body["value"] != 3.0 || again.Body["value"] != 3.0 {
		t.Fatalf("retry with the same key must return the first result: %v then %v", first.Body, again.Body)
	}
	if a := testcluster.Do(t, "POST", base+"/v1/counters/k/incr", `{"delta": 4}`, key); a.Status != 422 || testcluster.ErrCode(a) != "key_reused" {
		t.Fatalf("key reused with another delta: %d %v", a.Status, a.Body)
	}
	if a := testcluster.Do(t, "GET", base+"/v1/counters/k", "", nil); a.Body["value"] != 3.0 {
		t.Fatalf("k = %v, want 3", a.Body["value"])
	}
	if a := testcluster.Do(t, "POST", base+"/v1/counters/k/decr", `{"delta": 5}`, nil); a.Status != 200 || a.Body["value"] != -2.0 {
		t.Fatalf("decr: %d %v", a.Status, a.Body)
	}
	if a := testcluster.Do(t, "GET", base+"/v1/counters/k?consistency=stale", "", nil); a.Body["value"] != -2.0 {
		t.Fatalf("stale read: %v", a.Body)
	}
	if a := testcluster.Do(t, "GET", base+"/v1/cluster", "", nil); a.Status != 200 || len(a.Body["shards"].([]any)) != 2 {
		t.Fatalf("cluster: %d %v", a.Status, a.Body)
	}
}

// TestUnformedNodeRefusesCounterRequests: a node still waiting for its
// cluster to form does not know the shard count and must answer 503; so
// must the core it calls.
func TestUnformedNodeRefusesCounterRequests(t *testing.T) {
	n := testcluster.StartNode(t, node.Config{ID: "lonely", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		GossipAddr: "127.0.0.1:0", BootstrapExpect: 2, Logger: testcluster.Logger(t)})
	base := "http://" + n.HTTPAddr()
	for _, c := range []struct{ method, path string }{
		{"POST", "/v1/counters/x/incr"}, {"GET", "/v1/counters/x"}, {"POST", "/v1/batch"},
	} {
		a := testcluster.Do(t, c.method, base+c.path, "", nil)
		if a.Status != 503 || testcluster.ErrCode(a) != "unavailable" {
			t.Errorf("%s %s before formation: %d %v", c.method, c.path, a.Status, a.Body)
		}
	}
	if a := testcluster.Do(t, "GET", base+"/readyz", "", nil); a.Status != 503 {
		t.Errorf("readyz before formation: %d", a.Status)
	}
	var e *node.Error
	if _, err := n.Add(context.Background(), node.AddRequest{Name: "x", Delta: 1}); !errors.As(err, &e) || e.Code != node.CodeUnavailable {
		t.Errorf("core add before formation: %v", err)
	}
}

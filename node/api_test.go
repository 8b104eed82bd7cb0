package node

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// testHTTP bounds every test request: a handler that never answers must
// fail the test, not hang it.
var testHTTP = &http.Client{Timeout: 60 * time.Second}

type answer struct {
	status int
	body   map[string]any
	header http.Header
}

func do(t *testing.T, method, url, body string, hdr map[string]string) answer {
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
	resp, err := testHTTP.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s %s: answer is not JSON (%v): %q", method, url, err, raw)
	}
	return answer{resp.StatusCode, m, resp.Header}
}

func errCode(a answer) string {
	e, _ := a.body["error"].(map[string]any)
	s, _ := e["code"].(string)
	return s
}

// TestAPIBadInput: every kind of bad request gets its documented 4xx JSON
// error and changes nothing.
func TestAPIBadInput(t *testing.T) {
	tc := startCluster(t, 1, 2)
	base := "http://" + tc.nodes[0].HTTPAddr()

	// A known state to compare against.
	if a := do(t, "POST", base+"/v1/counters/c/incr", `{"delta": 7}`, nil); a.status != 200 || a.body["value"] != 7.0 {
		t.Fatalf("setup incr: %d %v", a.status, a.body)
	}
	long := strings.Repeat("x", 300)
	cases := []struct {
		name, method, path, body string
		hdr                      map[string]string
		status                   int
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
		a := do(t, c.method, base+c.path, c.body, c.hdr)
		if a.status != c.status || errCode(a) != c.code {
			t.Errorf("%s: got %d %q (%v), want %d %q", c.name, a.status, errCode(a), a.body, c.status, c.code)
		}
		if m, _ := a.body["error"].(map[string]any); m == nil || m["message"] == "" {
			t.Errorf("%s: error has no message: %v", c.name, a.body)
		}
	}
	if a := do(t, "GET", base+"/v1/counters/c", "", nil); a.body["value"] != 7.0 {
		t.Fatalf("bad requests changed the counter: %v", a.body)
	}
	if a := do(t, "GET", base+"/v1/counters?name=a&name=b", "", nil); a.status != 200 {
		t.Fatalf("names that look like nothing else still read: %d %v", a.status, a.body)
	}
}

// TestAPIOverflowAndKeys covers 409 overflow (state unchanged, current
// value reported), idempotent retries and 422 key reuse.
func TestAPIOverflowAndKeys(t *testing.T) {
	tc := startCluster(t, 1, 2)
	base := "http://" + tc.nodes[0].HTTPAddr()
	if a := do(t, "POST", base+"/v1/counters/big/incr", `{"delta": 9223372036854775807}`, nil); a.status != 200 {
		t.Fatalf("max incr: %d %v", a.status, a.body)
	}
	a := do(t, "POST", base+"/v1/counters/big/incr", "", nil)
	if a.status != 409 || errCode(a) != "overflow" {
		t.Fatalf("overflow: %d %v", a.status, a.body)
	}
	if e := a.body["error"].(map[string]any); e["value"] != 9.223372036854775807e18 {
		t.Fatalf("overflow answer lacks the current value: %v", a.body)
	}

	key := map[string]string{"Idempotency-Key": "k-1"}
	first := do(t, "POST", base+"/v1/counters/k/incr", `{"delta": 3}`, key)
	again := do(t, "POST", base+"/v1/counters/k/incr", `{"delta": 3}`, key)
	if first.status != 200 || again.status != 200 || first.body["value"] != 3.0 || again.body["value"] != 3.0 {
		t.Fatalf("retry with the same key must return the first result: %v then %v", first.body, again.body)
	}
	if a := do(t, "POST", base+"/v1/counters/k/incr", `{"delta": 4}`, key); a.status != 422 || errCode(a) != "key_reused" {
		t.Fatalf("key reused with another delta: %d %v", a.status, a.body)
	}
	if a := do(t, "GET", base+"/v1/counters/k", "", nil); a.body["value"] != 3.0 {
		t.Fatalf("k = %v, want 3", a.body["value"])
	}
	if a := do(t, "POST", base+"/v1/counters/k/decr", `{"delta": 5}`, nil); a.status != 200 || a.body["value"] != -2.0 {
		t.Fatalf("decr: %d %v", a.status, a.body)
	}
	if a := do(t, "GET", base+"/v1/counters/k?consistency=stale", "", nil); a.body["value"] != -2.0 {
		t.Fatalf("stale read: %v", a.body)
	}
	if a := do(t, "GET", base+"/v1/cluster", "", nil); a.status != 200 || len(a.body["shards"].([]any)) != 2 {
		t.Fatalf("cluster: %d %v", a.status, a.body)
	}
}

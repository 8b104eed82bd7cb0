package httpapi_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"tally/internal/testcluster"
)

// TestBatch: one request with ops on several shards applies each op once,
// answers in order with per-op results and errors, dedups retried keys,
// and a malformed op rejects the whole batch without applying any.
func TestBatch(t *testing.T) {
	tc := testcluster.Start(t, 1, 4)
	base := "http://" + tc.Nodes[0].HTTPAddr()
	body := `{"ops":[
		{"name":"a","delta":2,"idempotency_key":"k1"},
		{"name":"b"},
		{"name":"a","delta":3},
		{"name":"s","delta":-1,"min":0},
		{"name":"a","delta":2,"idempotency_key":"k1"},
		{"name":"r","max":1,"ttl_ms":60000}
	]}`
	a := testcluster.Do(t, "POST", base+"/v1/batch", body, nil)
	if a.Status != 200 {
		t.Fatalf("batch: %d %v", a.Status, a.Body)
	}
	res := a.Body["results"].([]any)
	want := []string{`a=2`, `b=1`, `a=5`, `s:out_of_bounds`, `a=2`, `r=1`}
	for i, w := range want {
		r := res[i].(map[string]any)
		got := ""
		if e, ok := r["error"].(map[string]any); ok {
			got = fmt.Sprintf("%s:%s", r["name"], e["code"])
		} else {
			got = fmt.Sprintf("%s=%v", r["name"], r["value"])
		}
		if got != w {
			t.Errorf("result %d = %s, want %s (%v)", i, got, w, r)
		}
	}
	if r := res[5].(map[string]any); r["expires_at"] == nil {
		t.Errorf("ttl op answered no expires_at: %v", r)
	}
	if g := testcluster.Do(t, "GET", base+"/v1/counters/a", "", nil); g.Body["value"] != 5.0 {
		t.Fatalf("a = %v after the batch, want 5 (the retried key counted once)", g.Body["value"])
	}

	// Malformed batches change nothing.
	many := `{"ops":[` + strings.Repeat(`{"name":"a"},`, 1000) + `{"name":"a"}]}`
	for _, c := range []struct{ body, code string }{
		{`{"ops":[{"name":"a"},{"name":""}]}`, "bad_name"},
		{`{"ops":[{"name":"a"},{"name":"b","delta":1.5}]}`, "bad_delta"},
		{`{"ops":[{"name":"a","min":3,"max":1}]}`, "bad_bounds"},
		{`{"ops":[{"name":"a","idempotency_key":"a b"}]}`, "bad_key"},
		{`{"ops":[]}`, "bad_body"},
		{`{"ops":[{"name":"a","extra":1}]}`, "bad_body"},
		{many, "too_many_ops"},
	} {
		a := testcluster.Do(t, "POST", base+"/v1/batch", c.body, nil)
		if a.Status != 400 || testcluster.ErrCode(a) != c.code {
			b, _ := json.Marshal(a.Body)
			t.Errorf("%.60s: %d %s, want 400 %s", c.body, a.Status, b, c.code)
		}
	}
	if g := testcluster.Do(t, "GET", base+"/v1/counters/a", "", nil); g.Body["value"] != 5.0 {
		t.Fatalf("a rejected batch changed a to %v", g.Body["value"])
	}
}

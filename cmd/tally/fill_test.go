package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// batchServer answers /v1/batch, recording every op; ops on the counter
// named fail fail with a refusal.
type batchServer struct {
	mu   sync.Mutex
	ops  map[string]int // per name
	keys map[string]bool
	dups int
	fail string
}

func (b *batchServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct{ Ops []fillOp }
	if r.URL.Path != "/v1/batch" || json.NewDecoder(r.Body).Decode(&req) != nil || len(req.Ops) > fillBatch {
		w.WriteHeader(400)
		return
	}
	b.mu.Lock()
	var out []string
	for _, op := range req.Ops {
		if op.Name == b.fail {
			out = append(out, fmt.Sprintf(`{"name":%q,"error":{"code":"keys_full","message":"full"}}`, op.Name))
			continue
		}
		b.ops[op.Name] += int(op.Delta)
		if op.Key != "" {
			if b.keys[op.Key] {
				b.dups++
			}
			b.keys[op.Key] = true
		}
		out = append(out, fmt.Sprintf(`{"name":%q,"value":1,"exact":true}`, op.Name))
	}
	b.mu.Unlock()
	fmt.Fprintf(w, `{"results":[%s]}`, strings.Join(out, ","))
}

func TestFill(t *testing.T) {
	b := &batchServer{ops: map[string]int{}, keys: map[string]bool{}}
	srv := httptest.NewServer(b)
	defer srv.Close()
	s := &server{Server: srv}
	code, out, errOut := tally(s, "fill", "--counters", "2500", "--keys", "1500", "--clients", "3")
	if code != 0 || !strings.Contains(out, "counters: 2500 in") || !strings.Contains(out, "keyed increments: 1500 in") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	c, k := 0, 0
	for name, n := range b.ops {
		switch {
		case strings.HasPrefix(name, "fill:c:") && n == 1:
			c++
		case strings.HasPrefix(name, "fill:k:"):
			k += n
		default:
			t.Fatalf("op on %q, %d", name, n)
		}
	}
	if c != 2500 || k != 1500 || len(b.keys) != 1500 || b.dups != 0 {
		t.Fatalf("%d counters, %d keyed increments, %d keys (%d repeated)", c, k, len(b.keys), b.dups)
	}

	b.fail = "fill:c:7"
	code, _, errOut = tally(s, "fill", "--counters", "100")
	if code != 1 || !strings.Contains(errOut, "1 of 100 counters failed") || !strings.Contains(errOut, "keys_full") {
		t.Fatalf("a failed op: exit %d, %s", code, errOut)
	}
	// With a node down, resends go to the next one.
	b.fail = ""
	code, out, errOut = tally(nil, "--addr", "127.0.0.1:1,"+strings.TrimPrefix(srv.URL, "http://"), "fill", "--counters", "3000", "--prefix", "two", "--clients", "2")
	if code != 0 || !strings.Contains(out, "counters: 3000 in") {
		t.Fatalf("fill with the first node down: exit %d\n%s%s", code, out, errOut)
	}
	if code, _, _ := tally(s, "fill"); code != 2 {
		t.Fatalf("fill without counts: exit %d", code)
	}
}

package chaos

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeNode serves /v1/debug/shards from a function, so the replica check
// can be shown replicas that agree, lag, or diverge.
func fakeNode(t *testing.T, shards func() []DebugShard) *Node {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"node": "x", "shards": shards()})
	}))
	t.Cleanup(srv.Close)
	return &Node{ID: srv.URL, HTTP: strings.TrimPrefix(srv.URL, "http://")}
}

func TestReplicaCheck(t *testing.T) {
	fixed := func(idx uint64, digest string) func() []DebugShard {
		return func() []DebugShard { return []DebugShard{{ID: 0, AppliedIndex: idx, Digest: digest}} }
	}
	// A replica that catches up while the check polls.
	var calls atomic.Int64
	catchingUp := func() []DebugShard {
		if calls.Add(1) < 3 {
			return []DebugShard{{ID: 0, AppliedIndex: 9, Digest: "old"}}
		}
		return []DebugShard{{ID: 0, AppliedIndex: 10, Digest: "d"}}
	}
	// All at index 10 but one already shows the next batch (its index is
	// published just after the apply); a poll later all are at 11.
	var polls [3]atomic.Int64
	racing := func(i int, first string) func() []DebugShard {
		return func() []DebugShard {
			if polls[i].Add(1) == 1 {
				return []DebugShard{{ID: 0, AppliedIndex: 10, Digest: first}}
			}
			return []DebugShard{{ID: 0, AppliedIndex: 11, Digest: "e"}}
		}
	}
	cases := []struct {
		name  string
		nodes []func() []DebugShard
		agree bool
		want  string
	}{
		{"agree", []func() []DebugShard{fixed(10, "d"), fixed(10, "d"), fixed(10, "d")}, true, ""},
		{"catches up", []func() []DebugShard{fixed(10, "d"), catchingUp, fixed(10, "d")}, true, ""},
		{"publishing race", []func() []DebugShard{racing(0, "d"), racing(1, "e"), racing(2, "d")}, true, ""},
		{"diverged", []func() []DebugShard{fixed(10, "d"), fixed(10, "e"), fixed(10, "d")}, false, "DIVERGED"},
		{"never converges", []func() []DebugShard{fixed(10, "d"), fixed(7, "d"), fixed(10, "d")}, false, "did not reach one applied index"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &Cluster{Shards: 1, hc: &http.Client{Timeout: time.Second}}
			for _, f := range tc.nodes {
				c.Nodes = append(c.Nodes, fakeNode(t, f))
			}
			agree, problems := replicasAgree(context.Background(), c, 500*time.Millisecond)
			if agree != tc.agree || (tc.want != "" && !strings.Contains(strings.Join(problems, ";"), tc.want)) {
				t.Fatalf("agree %v, problems %v", agree, problems)
			}
		})
	}
}

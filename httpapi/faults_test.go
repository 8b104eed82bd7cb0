package httpapi_test

import (
	"fmt"
	"testing"
	"time"

	"tally/internal/testcluster"
	"tally/node"
)

func startSingle(t *testing.T, faults bool) *node.Node {
	t.Helper()
	n := testcluster.StartNode(t, node.Config{
		ID: "n1", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0", GossipAddr: "127.0.0.1:0",
		Shards: 2, Logger: testcluster.Logger(t), EnableFaults: faults,
		HeartbeatTimeout: time.Second, ElectionTimeout: time.Second, RequestTimeout: 10 * time.Second,
	})
	testcluster.WaitReady(t, n)
	return n
}

// TestFaultsEndpoint: the fault switch and the replica digests are served
// only with --enable-faults; bad requests get a 4xx JSON error.
func TestFaultsEndpoint(t *testing.T) {
	off := startSingle(t, false)
	for _, path := range []string{"/v1/faults", "/v1/debug/shards"} {
		if a := testcluster.Do(t, "GET", "http://"+off.HTTPAddr()+path, "", nil); a.Status != 404 || testcluster.ErrCode(a) != "not_found" {
			t.Fatalf("GET %s without faults: %d %v", path, a.Status, a.Body)
		}
	}

	n := startSingle(t, true)
	base := "http://" + n.HTTPAddr()
	a := testcluster.Do(t, "GET", base+"/v1/faults", "", nil)
	if a.Status != 200 || a.Body["raft"] != n.RaftAddr() || len(a.Body["blocked"].([]any)) != 0 {
		t.Fatalf("GET /v1/faults: %d %v", a.Status, a.Body)
	}
	for _, body := range []string{
		``, `{`, `[]`, `{}`, `{"heal":false}`, `{"block":["a:1"],"heal":true}`, `{"cut":["a:1"]}`,
		`{"block":["nocolon"]}`, `{"block":[""]}`, `{"block":["a:"]}`, `{"block":["` + n.RaftAddr() + `"]}`,
	} {
		if a := testcluster.Do(t, "POST", base+"/v1/faults", body, nil); a.Status != 400 || (testcluster.ErrCode(a) != "bad_body" && testcluster.ErrCode(a) != "bad_peer") {
			t.Fatalf("POST %q: %d %v", body, a.Status, a.Body)
		}
	}
	a = testcluster.Do(t, "POST", base+"/v1/faults", `{"block":["127.0.0.1:1","127.0.0.1:2"]}`, nil)
	if a.Status != 200 || fmt.Sprint(a.Body["blocked"]) != "[127.0.0.1:1 127.0.0.1:2]" {
		t.Fatalf("block: %d %v", a.Status, a.Body)
	}
	if got := n.Faults().Blocked(); len(got) != 2 {
		t.Fatalf("switch holds %v", got)
	}
	a = testcluster.Do(t, "POST", base+"/v1/faults", `{"unblock":["127.0.0.1:1"]}`, nil)
	if a.Status != 200 || fmt.Sprint(a.Body["blocked"]) != "[127.0.0.1:2]" {
		t.Fatalf("unblock: %d %v", a.Status, a.Body)
	}
	a = testcluster.Do(t, "POST", base+"/v1/faults", `{"heal":true}`, nil)
	if a.Status != 200 || len(a.Body["blocked"].([]any)) != 0 || len(n.Faults().Blocked()) != 0 {
		t.Fatalf("heal: %d %v", a.Status, a.Body)
	}

	// Digests move with the state and equal indexes come with equal digests.
	digest := func() (float64, string) {
		a := testcluster.Do(t, "GET", base+"/v1/debug/shards", "", nil)
		shards := a.Body["shards"].([]any)
		if a.Status != 200 || len(shards) != 2 {
			t.Fatalf("debug shards: %d %v", a.Status, a.Body)
		}
		var idx float64
		var all string
		for _, s := range shards {
			m := s.(map[string]any)
			idx += m["applied_index"].(float64)
			all += m["digest"].(string)
		}
		return idx, all
	}
	i1, d1 := digest()
	if a := testcluster.Do(t, "POST", base+"/v1/counters/x/incr", "", nil); a.Status != 200 {
		t.Fatalf("incr: %d %v", a.Status, a.Body)
	}
	i2, d2 := digest()
	if i2 <= i1 || d2 == d1 {
		t.Fatalf("after a write: index %v -> %v, digest changed %v", i1, i2, d1 != d2)
	}
}

package httpapi_test

import (
	"testing"

	"tally/internal/testcluster"
	"tally/placement"
)

// TestClusterKeyPlacement: /v1/cluster tells how names map to shards, and
// every shard's leader is a member with an HTTP address, which is all a
// client needs to send an op straight to the leader of its shard.
func TestClusterKeyPlacement(t *testing.T) {
	tc := testcluster.Start(t, 1, 3)
	n := tc.Nodes[0]
	a := testcluster.Do(t, "GET", "http://"+n.HTTPAddr()+"/v1/cluster", "", nil)
	if a.Status != 200 {
		t.Fatalf("cluster: %d %v", a.Status, a.Body)
	}
	kp, _ := a.Body["key_placement"].(map[string]any)
	if kp["scheme"] != string(placement.Slots) || kp["shards"] != 3.0 {
		t.Fatalf("key_placement = %v, want {scheme: slots, shards: 3}", a.Body["key_placement"])
	}
	if got := n.KeyPlacement(); kp["scheme"] != string(got.Scheme) || kp["shards"] != float64(got.Shards) {
		t.Fatalf("key_placement %v is not the node's placement %+v", kp, got)
	}
	httpOf := map[string]any{}
	for _, m := range a.Body["members"].([]any) {
		m := m.(map[string]any)
		httpOf[m["id"].(string)] = m["http"]
	}
	for _, s := range a.Body["shards"].([]any) {
		s := s.(map[string]any)
		if h := httpOf[s["leader"].(string)]; h != n.HTTPAddr() {
			t.Errorf("shard %v: leader %v has http %v, want %s", s["id"], s["leader"], h, n.HTTPAddr())
		}
	}
}

// TestIncrAnswerCarriesSplit: the answer of an increment of a split
// counter says its split factor (how a routing client learns it); an
// unsplit counter's answer has none.
func TestIncrAnswerCarriesSplit(t *testing.T) {
	tc := testcluster.Start(t, 1, 3)
	base := "http://" + tc.Nodes[0].HTTPAddr()
	if a := testcluster.Do(t, "POST", base+"/v1/counters/plain/incr", "", nil); a.Status != 200 || a.Body["split"] != nil {
		t.Fatalf("unsplit incr: %d %v, want no split field", a.Status, a.Body)
	}
	if a := testcluster.Do(t, "POST", base+"/v1/counters/wide/split", `{"n": 3}`, nil); a.Status != 200 {
		t.Fatalf("split: %d %v", a.Status, a.Body)
	}
	for _, op := range []string{"incr", "decr"} {
		if a := testcluster.Do(t, "POST", base+"/v1/counters/wide/"+op, "", nil); a.Status != 200 || a.Body["split"] != 3.0 || a.Body["exact"] != false {
			t.Fatalf("%s of a split counter: %d %v, want split 3", op, a.Status, a.Body)
		}
	}
}

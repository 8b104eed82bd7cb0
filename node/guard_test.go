package node

import (
	"context"
	"testing"
	"time"

	"tally/fsm"
	"tally/placement"
)

// TestForwardedWriteForAnotherShardIsRefused: a sender that disagrees on
// the shard count would place a counter on the wrong shard, where no
// reader looks; the receiving leader must refuse it and apply nothing.
func TestForwardedWriteForAnotherShardIsRefused(t *testing.T) {
	tc := startCluster(t, 1, 4)
	n := tc.nodes[0]
	name := "misplaced"
	home := placement.Home(name, 4)
	wrong := (home + 1) % 4
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.localWrite(ctx, wrong, []fsm.Op{{Kind: fsm.OpAdd, Name: name, Delta: 1}}); err == nil {
		t.Fatalf("a write for shard %d accepted on shard %d", home, wrong)
	}
	if v, err := n.shard(wrong).Read(ctx, []string{name}, true); err != nil || v[0] != 0 {
		t.Fatalf("shard %d holds %v (%v) after the refused write", wrong, v, err)
	}
	if _, err := n.localWrite(ctx, home, []fsm.Op{{Kind: fsm.OpAdd, Name: name, Delta: 1}}); err != nil {
		t.Fatalf("the right shard refused: %v", err)
	}
}

// TestUnformedNodeRefusesCounterRequests: a node still waiting for its
// cluster to form does not know the shard count and must answer 503.
func TestUnformedNodeRefusesCounterRequests(t *testing.T) {
	n, err := Start(Config{ID: "lonely", DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", RaftAddr: "127.0.0.1:0",
		GossipAddr: "127.0.0.1:0", BootstrapExpect: 2, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Kill()
	base := "http://" + n.HTTPAddr()
	for _, c := range []struct{ method, path string }{
		{"POST", "/v1/counters/x/incr"}, {"GET", "/v1/counters/x"}, {"POST", "/v1/batch"},
	} {
		a := do(t, c.method, base+c.path, "", nil)
		if a.status != 503 || errCode(a) != "unavailable" {
			t.Errorf("%s %s before formation: %d %v", c.method, c.path, a.status, a.body)
		}
	}
	if a := do(t, "GET", base+"/readyz", "", nil); a.status != 503 {
		t.Errorf("readyz before formation: %d", a.status)
	}
}

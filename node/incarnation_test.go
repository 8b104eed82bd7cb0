package node_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"tally/internal/testcluster"
	"tally/node"
)

// TestWipedReplicaRefusesToRejoin: a replica whose data dir is wiped comes
// back with the same id. It has forgotten its raft term and vote, so as the
// old replica it could vote twice in one term; it must refuse to take part
// before it opens any replica (no raft state at all, so no vote), and say
// what to do. The other two keep counting.
func TestWipedReplicaRefusesToRejoin(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.Start(t, 3, 2)
	for i := range 3 {
		incs := readIncarnations(t, tc.Cfgs[i].DataDir)
		if len(incs) != 3 {
			t.Fatalf("n%d recorded incarnations %v; want all 3 members'", i+1, incs)
		}
	}
	addr := tc.Nodes[0].HTTPAddr()
	if a := testcluster.Do(t, "POST", "http://"+addr+"/v1/counters/c/incr", "", nil); a.Status != 200 {
		t.Fatalf("incr: %d %s", a.Status, a.Body)
	}

	victim := tc.Cfgs[2]
	tc.Nodes[2].Kill()
	<-tc.Nodes[2].Done()
	if err := os.RemoveAll(victim.DataDir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(victim.DataDir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := tc.Restart(2)
	select {
	case <-n.Failed():
	case <-time.After(60 * time.Second):
		t.Fatal("the wiped node did not refuse to rejoin within 60s")
	}
	err := n.FormationError()
	if !errors.Is(err, node.ErrReplicaReplaced) {
		t.Fatalf("formation error %v; want ErrReplicaReplaced", err)
	}
	t.Logf("refused: %v", err)
	ents, rerr := os.ReadDir(victim.DataDir)
	if rerr != nil {
		t.Fatal(rerr)
	}
	for _, e := range ents {
		if e.Name() != "incarnation" {
			t.Errorf("the refused node wrote %s into its data dir: it took part in the cluster", e.Name())
		}
	}

	// Two of three replicas still make a quorum.
	for i := range 10 {
		a := testcluster.Do(t, "POST", "http://"+addr+"/v1/counters/c/incr", "", nil)
		if a.Status != 200 {
			t.Fatalf("incr %d after the refusal: %d %s", i, a.Status, a.Body)
		}
	}
	a := testcluster.Do(t, "GET", "http://"+tc.Nodes[1].HTTPAddr()+"/v1/counters/c", "", nil)
	if a.Status != 200 || a.Body["value"] != float64(11) {
		t.Fatalf("read: %d %s; want 11", a.Status, a.Body)
	}
}

// TestIncarnationsLearntForOlderClusterState: a cluster state written
// before incarnations were recorded gets them from gossip after a restart,
// so the wiped-disk check protects clusters formed by older versions too.
func TestIncarnationsLearntForOlderClusterState(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.Start(t, 3, 1)
	cfg := tc.Cfgs[0]
	tc.Nodes[0].Kill()
	<-tc.Nodes[0].Done()
	path := filepath.Join(cfg.DataDir, "cluster.json")
	var st map[string]any
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	delete(st, "incarnations")
	if b, err = json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	tc.Restart(0)
	testcluster.WaitFor(t, "n1 to learn every member's incarnation", 60*time.Second, func() bool {
		return len(readIncarnations(t, cfg.DataDir)) == 3
	})
	for i, id := range []string{"n1", "n2", "n3"} {
		want := readFile(t, filepath.Join(tc.Cfgs[i].DataDir, "incarnation"))
		if got := readIncarnations(t, cfg.DataDir)[id]; got+"\n" != want {
			t.Errorf("n1 learnt %q for %s; its data dir says %q", got, id, want)
		}
	}
}

func readIncarnations(t *testing.T, dir string) map[string]string {
	t.Helper()
	var st struct {
		Incarnations map[string]string `json:"incarnations"`
	}
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, "cluster.json"))), &st); err != nil {
		t.Fatal(err)
	}
	return st.Incarnations
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(fmt.Errorf("reading %s: %w", path, err))
	}
	return string(b)
}

package node

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestClusterStateFromEarlierVersion: a cluster.json written before
// replicas moved has no hosted list; the node's replicas are then the
// formation placement's, and it has not been marked bootstrapped (so a
// shard it was first of, still empty, is bootstrapped as before). A file
// with an empty hosted list means the node holds nothing, not "derive it".
func TestClusterStateFromEarlierVersion(t *testing.T) {
	dir := t.TempDir()
	old := `{"shards":3,"replicas":2,"members":["n1","n2","n3"],"placement":[["n1","n2"],["n2","n3"],["n3","n1"]],"addrs":{}}`
	if err := os.WriteFile(filepath.Join(dir, "cluster.json"), []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	if st.Bootstrapped {
		t.Fatal("an earlier version's file reads as bootstrapped")
	}
	st.hostedFrom("n2")
	if !slices.Equal(st.Hosted, []uint32{0, 1}) {
		t.Fatalf("n2 hosts %v, want the placement's [0 1]", st.Hosted)
	}
	if err := saveState(dir, st); err != nil {
		t.Fatal(err)
	}
	st.Hosted = []uint32{}
	if err := saveState(dir, st); err != nil {
		t.Fatal(err)
	}
	again, err := loadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	again.hostedFrom("n2")
	if again.Hosted == nil || len(again.Hosted) != 0 {
		t.Fatalf("an empty hosted list came back as %v", again.Hosted)
	}
}

package node_test

import (
	"context"
	"testing"
	"time"

	"tally/fsm"
	"tally/internal/testcluster"
	"tally/placement"
)

// TestForwardedWriteForAnotherShardIsRefused: a sender that disagrees on
// the shard count would place a counter on the wrong shard, where no
// reader looks; the receiving leader must refuse it and apply nothing.
func TestForwardedWriteForAnotherShardIsRefused(t *testing.T) {
	tc := testcluster.Start(t, 1, 4)
	n := tc.Nodes[0]
	name := "misplaced"
	home := placement.Home(name, 4)
	wrong := (home + 1) % 4
	// Ready means a leader is known; reading the replica directly needs it
	// to lead with its term's marker applied.
	testcluster.WaitFor(t, "the node to lead both shards", time.Minute, func() bool {
		return n.ShardForTest(wrong).IsLeader() && n.ShardForTest(home).IsLeader()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.LocalWriteForTest(ctx, wrong, []fsm.Op{{Kind: fsm.OpAdd, Name: name, Delta: 1}}); err == nil {
		t.Fatalf("a write for shard %d accepted on shard %d", home, wrong)
	}
	if v, err := n.ShardForTest(wrong).Read(ctx, []string{name}, true); err != nil || v[0] != 0 {
		t.Fatalf("shard %d holds %v (%v) after the refused write", wrong, v, err)
	}
	if _, err := n.LocalWriteForTest(ctx, home, []fsm.Op{{Kind: fsm.OpAdd, Name: name, Delta: 1}}); err != nil {
		t.Fatalf("the right shard refused: %v", err)
	}
}

package node

import (
	"context"

	"tally/fsm"
	"tally/shard"
)

// Internals the tests of package node_test reach into.

func (n *Node) ShardForTest(s uint32) *shard.Shard { return n.shard(s) }

func (n *Node) LocalWriteForTest(ctx context.Context, s uint32, ops []fsm.Op) ([]fsm.Result, error) {
	return n.localWrite(ctx, s, ops)
}

func (n *Node) ReadForTest(ctx context.Context, s uint32, names []string, linear bool) ([]shard.Lookup, error) {
	return n.read(ctx, s, names, linear)
}

// ForgetSplitsForTest empties the node's cache of split factors, as if it
// had just restarted.
func (n *Node) ForgetSplitsForTest() {
	n.splits.mu.Lock()
	n.splits.n = nil
	n.splits.mu.Unlock()
}

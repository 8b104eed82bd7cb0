package node

import (
	"context"
	"slices"

	"tally/cluster"
)

// The core's membership operations: an operator decommissions a live node
// (its replicas move away, then it is left and may be stopped) or removes
// a dead one (it is dropped from every shard and its replicas re-placed).
// Both only record the node's new state; the coordinator (place.go) does
// the moving.

// NodeChange is the answer of Decommission and RemoveNode.
type NodeChange struct {
	ID    string
	State cluster.State
}

// Decommission starts moving every replica off node id. It is refused
// when the remaining active nodes could not hold the shards' replicas.
func (n *Node) Decommission(ctx context.Context, id string) (NodeChange, error) {
	return n.changeNode(ctx, id, cluster.Leaving, cluster.CanDecommission)
}

// RemoveNode drops the dead node id from every shard. It is refused while
// the node is alive, and when a shard it is a voter of has no live quorum
// without it (the removal itself needs one).
func (n *Node) RemoveNode(ctx context.Context, id string) (NodeChange, error) {
	return n.changeNode(ctx, id, cluster.Removed, cluster.CanRemove)
}

func (n *Node) changeNode(ctx context.Context, id string, to cluster.State, check func(cluster.View, string) error) (NodeChange, error) {
	if err := n.checkFormed(); err != nil {
		return NodeChange{}, err
	}
	ctx, cancel := n.requestContext(ctx, 2)
	defer cancel()
	v, recordsErr := n.gatherView(ctx)
	if v == nil {
		return NodeChange{}, clusterError(recordsErr)
	}
	if recordsErr != nil {
		// Without the records every node looks active; a refusal is still
		// right, an approval must wait for them.
		if err := check(v.View, id); err != nil {
			return NodeChange{}, &Error{Code: CodeMembershipRefused, Message: err.Error() + "; nothing changed"}
		}
		return NodeChange{}, clusterError(recordsErr)
	}
	i := slices.IndexFunc(v.Nodes, func(nd cluster.Node) bool { return nd.ID == id })
	if i < 0 {
		return NodeChange{}, &Error{Code: CodeUnknownNode, Message: "no member or replica has the id " + id}
	}
	cur := v.Nodes[i].State
	switch {
	case cur == to || (to == cluster.Leaving && cur == cluster.Left):
		return NodeChange{ID: id, State: cur}, nil // already done
	case cur == cluster.Removed:
		return NodeChange{}, &Error{Code: CodeMembershipRefused, Message: "node " + id + " was removed; a replacement joins under a new id"}
	}
	if err := check(v.View, id); err != nil {
		return NodeChange{}, &Error{Code: CodeMembershipRefused, Message: err.Error() + "; nothing changed"}
	}
	if err := n.setNodeState(ctx, id, to); err != nil {
		return NodeChange{}, clusterError(err)
	}
	return NodeChange{ID: id, State: to}, nil
}

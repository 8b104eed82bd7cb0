// Package cluster decides where a tally cluster's shard replicas live as
// nodes join, leave and die: the node states an operator sets, and the
// planner that turns the shards' raft configurations and the members'
// liveness into the next membership change of each shard. It is pure (no
// raft, no I/O): the node package gathers the view and carries out the
// steps, and tests drive the planner through every case on plain values.
package cluster

import "fmt"

// State is a node's place in the cluster, as an operator set it. It is
// replicated (the node package keeps it in the cluster's own state
// machine), so every coordinator after a leader change sees the same.
type State uint8

const (
	// Active nodes take replicas. A node is active unless told otherwise.
	Active State = 0
	// Leaving nodes are being decommissioned: their replicas move to
	// active nodes and their leaderships are handed away.
	Leaving State = 1
	// Left nodes hold no replica any more; stopping them costs nothing.
	Left State = 2
	// Removed nodes were dropped from every shard while dead; their
	// replicas are re-placed on live nodes. A removed id never takes
	// part again: a replacement joins under a new id.
	Removed State = 3
)

func (s State) String() string {
	switch s {
	case Active:
		return "active"
	case Leaving:
		return "leaving"
	case Left:
		return "left"
	case Removed:
		return "removed"
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Holds reports whether a node in state s may keep replicas.
func (s State) Holds() bool { return s == Active || s == Leaving }

package node

import (
	"context"
	"fmt"
	"strconv"

	"tally/cluster"
	"tally/fsm"
)

// Node records: what the cluster remembers of each node beyond the raft
// configurations, replicated like any counter. Each is an integer record
// of the counter state machine under a name no client can use (it starts
// with a NUL byte, which ValidName refuses on every protocol), so it is
// committed on a quorum, carried by snapshots and read linearizably with
// no second raft group and no new state machine op:
//   - the node's state (cluster.State), set by decommission and remove and
//     by the coordinator when a leaving node has drained;
//   - its data dir's incarnation, recorded before the node is first given
//     a replica, so a node that joined later and then lost its disk is
//     refused as a formation member's would be (incarnation.go).

func stateRecord(id string) string       { return "\x00tally:node-state:" + id }
func incarnationRecord(id string) string { return "\x00tally:node-incarnation:" + id }

// incarnationValue packs an incarnation (16 hex digits, incarnation.go)
// into a record value; ok is false for one that does not fit.
func incarnationValue(inc string) (int64, bool) {
	v, err := strconv.ParseUint(inc, 16, 64)
	if err != nil || len(inc) != 16 || v == 0 {
		return 0, false
	}
	return int64(v), true
}

func incarnationString(v int64) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprintf("%016x", uint64(v))
}

// nodeRecords reads the state and recorded incarnation of each id,
// linearizably.
func (n *Node) nodeRecords(ctx context.Context, ids []string) (states map[string]cluster.State, incs map[string]string, err error) {
	names := make([]string, 0, 2*len(ids))
	for _, id := range ids {
		names = append(names, stateRecord(id), incarnationRecord(id))
	}
	vals, err := n.readCounters(ctx, names, true)
	if err != nil {
		return nil, nil, err
	}
	states, incs = map[string]cluster.State{}, map[string]string{}
	for i, id := range ids {
		states[id] = cluster.State(vals[2*i].value)
		if inc := incarnationString(vals[2*i+1].value); inc != "" {
			incs[id] = inc
		}
	}
	return states, incs, nil
}

// setRecord writes one record; an ambiguous outcome is an error (the
// callers read the records again before acting on them).
func (n *Node) setRecord(ctx context.Context, name string, v int64) error {
	out := n.writeOps(ctx, []fsm.Op{{Kind: fsm.OpSet, Name: name, Delta: v}})
	if e := out[0].failure(); e != nil {
		return e
	}
	return nil
}

func (n *Node) setNodeState(ctx context.Context, id string, st cluster.State) error {
	if err := n.setRecord(ctx, stateRecord(id), int64(st)); err != nil {
		return err
	}
	n.log.Info("node state", "member", id, "state", st)
	return nil
}

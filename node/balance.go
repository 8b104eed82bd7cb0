package node

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"tally/cluster"
	"tally/forward"
)

// Leader balancing: a node that leads more than its share of the shards
// hands leadership to the least loaded live replica.

// probe reports whether the node at addr answers for shard s right now.
func (n *Node) probe(addr string, s uint32) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := n.fwd.Read(ctx, addr, forward.ReadRequest{Shard: s})
	return err == nil
}

// leadingCounts returns, per node id, how many shards it claims to lead.
func (n *Node) leadingCounts() map[string]int {
	out := map[string]int{}
	for s := 0; s < n.shardCount(); s++ {
		if id, _ := n.leaderOf(uint32(s)); id != "" {
			out[id]++
		}
	}
	return out
}

// balanceOnce spreads shard leaders, every BalanceInterval: when this
// node leads more than its share, it transfers one surplus shard per round
// to the least loaded live replica, so leadership settles without
// thrashing.
func (n *Node) balanceOnce() {
	alive := map[string]string{} // id → raft addr of live members hosting shards
	for _, m := range n.ms.snapshot() {
		if m.State == "alive" && len(m.Hosted) > 0 {
			alive[m.ID] = m.Raft
		}
	}
	if len(alive) < 2 {
		return
	}
	// Leadership goes only to active nodes: a leaving one is handing its
	// shards away, and one given a leadership would take it back.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	states, _, err := n.nodeRecords(ctx, slices.Sorted(maps.Keys(alive)))
	cancel()
	if err != nil {
		return
	}
	for id, st := range states {
		if st != cluster.Active {
			delete(alive, id)
		}
	}
	if _, ok := alive[n.cfg.ID]; !ok || len(alive) < 2 {
		return
	}
	counts := n.leadingCounts()
	share := (n.shardCount() + len(alive) - 1) / len(alive)
	if counts[n.cfg.ID] <= share {
		return
	}
	for _, sh := range n.hostedShards() {
		if !sh.IsLeader() {
			continue
		}
		voters, err := sh.Voters()
		if err != nil {
			continue
		}
		ids := make([]string, 0, len(voters))
		for id := range voters {
			if _, ok := alive[id]; ok && id != n.cfg.ID && counts[id] < share {
				ids = append(ids, id)
			}
		}
		if len(ids) == 0 {
			continue
		}
		slices.SortFunc(ids, func(a, b string) int {
			if counts[a] != counts[b] {
				return counts[a] - counts[b]
			}
			if a < b {
				return -1
			}
			return 1
		})
		to := ""
		for _, id := range ids {
			// Gossip notices a dead node only after seconds of suspicion,
			// and a transfer to a dead node stalls the shard's writes for
			// an election timeout; so first ask the target itself.
			if n.probe(voters[id], sh.ID()) {
				to = id
				break
			}
		}
		if to == "" {
			continue
		}
		n.log.Info("balancing leaders: transferring", "shard", sh.ID(), "to", to, "leading", counts[n.cfg.ID], "share", share)
		if err := sh.TransferLeadership(to, voters[to]); err != nil {
			n.log.Warn("leadership transfer failed", "shard", sh.ID(), "to", to, "err", err)
		}
		return
	}
}

// HandOff transfers this node's leadership of shard s to another of the
// shard's voters (raft picks the most up-to-date), as a shutdown does for
// every shard: for maintenance, and to move a leader on purpose.
func (n *Node) HandOff(s uint32) error {
	sh := n.shard(s)
	if sh == nil || !sh.IsLeader() {
		return fmt.Errorf("node %s does not lead shard %d", n.cfg.ID, s)
	}
	return sh.TransferLeadership("", "")
}

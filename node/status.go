package node

import (
	"context"
	"sort"
	"sync"
	"time"

	"tally/placement"
	"tally/shard"
)

// What a node tells about itself and the cluster, for frontends to serve.

// Formed reports whether this node has joined a formed cluster; before
// that, every counter operation fails with CodeUnavailable.
func (n *Node) Formed() bool { return n.formed.Load() }

// FormationError is why cluster formation failed, or nil.
func (n *Node) FormationError() error {
	err, _ := n.formErr.Load().(error)
	return err
}

// ShardCount is the cluster's shard count (the configured one until the
// cluster has formed).
func (n *Node) ShardCount() int { return n.shardCount() }

// Config is the node's configuration, defaults filled in.
func (n *Node) Config() Config { return n.cfg }

// MemberStatus is one gossip member as this node sees it.
type MemberStatus struct {
	ID    string
	HTTP  string
	RESP  string // "" when it has no RESP listener
	State string // alive or dead: gossip's word on it
	// Node is its place in the cluster (active, leaving, left, removed),
	// from the node records; set by ClusterDetail only.
	Node string
}

// ShardStatus is one shard as this node sees it.
type ShardStatus struct {
	ID       uint32
	Leader   string   // node id, "" if none is known
	Replicas []string // node ids, sorted
	// Learners are the replicas catching up (raft non-voters, not in
	// Replicas); known where this node reads the configuration.
	Learners []string
	// AppliedIndex is the local replica's, when this node hosts one.
	AppliedIndex    uint64
	HasAppliedIndex bool
}

// ClusterStatus is the cluster as this node sees it.
type ClusterStatus struct {
	Node    string
	Keys    placement.Scheme // how names map to shards
	Members []MemberStatus
	Shards  []ShardStatus
}

// ClusterStatus reports the members and, per shard, its leader and
// replicas: from the local replica's configuration when this node hosts
// one, from gossip otherwise.
func (n *Node) ClusterStatus() ClusterStatus {
	members := n.ms.snapshot()
	st := ClusterStatus{Node: n.cfg.ID, Keys: n.keys().Scheme, Members: []MemberStatus{}, Shards: []ShardStatus{}}
	for _, m := range members {
		st.Members = append(st.Members, MemberStatus{ID: m.ID, HTTP: m.HTTP, RESP: m.RESP, State: m.State})
	}
	for s := 0; s < n.shardCount(); s++ {
		id := uint32(s)
		ss := ShardStatus{ID: id, Replicas: []string{}, Learners: []string{}}
		ss.Leader, _ = n.leaderOf(id)
		if sh := n.shard(id); sh != nil {
			ss.AppliedIndex, ss.HasAppliedIndex = sh.AppliedIndex(), true
			if c, err := sh.Configuration(); err == nil {
				ss.setConfig(c)
			}
		} else {
			for _, m := range members {
				for _, h := range m.Hosted {
					if h == id {
						ss.Replicas = append(ss.Replicas, m.ID)
					}
				}
			}
		}
		sort.Strings(ss.Replicas)
		st.Shards = append(st.Shards, ss)
	}
	return st
}

func (ss *ShardStatus) setConfig(c shard.Configuration) {
	ss.Replicas, ss.Learners = []string{}, []string{}
	for _, srv := range c.Servers {
		if srv.Voter {
			ss.Replicas = append(ss.Replicas, srv.ID)
		} else {
			ss.Learners = append(ss.Learners, srv.ID)
		}
	}
	sort.Strings(ss.Replicas)
	sort.Strings(ss.Learners)
}

// ClusterDetail is ClusterStatus with what it takes asking for: each
// member's node state from the node records, and the configuration of
// each shard this node has no replica of from the shard's leader. What
// cannot be asked in time is left as ClusterStatus has it.
func (n *Node) ClusterDetail(ctx context.Context) ClusterStatus {
	st := n.ClusterStatus()
	if !n.formed.Load() {
		return st
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for i := range st.Shards {
		ss := &st.Shards[i]
		if ss.HasAppliedIndex {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c, _, _, err := n.leaderConfig(ctx, ss.ID); err == nil {
				ss.setConfig(c)
			}
		}()
	}
	ids := make([]string, len(st.Members))
	for i, m := range st.Members {
		ids[i] = m.ID
	}
	states, _, err := n.nodeRecords(ctx, ids)
	wg.Wait()
	if err == nil {
		for i := range st.Members {
			st.Members[i].Node = states[st.Members[i].ID].String()
		}
	}
	return st
}

// ShardDigest is one local replica's applied state, for comparing
// replicas (the chaos checks do).
type ShardDigest struct {
	ID           uint32
	Leader       bool
	AppliedIndex uint64
	Digest       string
	Counters     int
	// SnapshotIndex is the replica's latest snapshot: a replica that has
	// applied less than it minus the trailing logs needs a snapshot install.
	SnapshotIndex uint64
}

// ShardDigests lists this node's replicas by shard id.
func (n *Node) ShardDigests() []ShardDigest {
	out := []ShardDigest{}
	for _, sh := range n.hostedShards() {
		idx, digest, counters := sh.Digest()
		out = append(out, ShardDigest{ID: sh.ID(), Leader: sh.IsLeader(), AppliedIndex: idx, Digest: digest, Counters: counters, SnapshotIndex: sh.LastSnapshotIndex()})
	}
	return out
}

// KeyPlacement is how this cluster maps counter names to shards.
func (n *Node) KeyPlacement() placement.Map { return n.keys() }

// Route says where a counter's writes go: its home shard, the id of the
// node that leads it ("" while none is known), whether this node leads the
// home shard or, for a split counter, any of its sub-counters' shards
// (then it writes here without a forwarding hop), and whether this node
// holds a replica of the home shard (for stale reads).
func (n *Node) Route(name string) (home uint32, leader string, leads, hosts bool) {
	keys := n.keys()
	home = keys.Home(name)
	leader, _ = n.leaderOf(home)
	leading := n.leading.Load()
	for i := range n.splits.get(name) {
		if leading&(1<<keys.SubShard(name, i)) != 0 {
			leads = true
			break
		}
	}
	return home, leader, leads, n.shard(home) != nil
}

// RESPAddrOf is the RESP address member id gossips, "" if unknown.
func (n *Node) RESPAddrOf(id string) string {
	if id == n.cfg.ID {
		return n.RESPAddr()
	}
	m, ok := n.ms.member(id)
	if !ok {
		return ""
	}
	return m.RESP
}

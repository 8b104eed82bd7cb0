package transport

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// raftCluster is n nodes, each one Mux and one RaftNet, running raft
// groups for several shards over them.
type raftCluster struct {
	t      *testing.T
	muxes  []*Mux
	nets   []*RaftNet
	groups [][]raftNode // [shard][node]
}

func newRaftCluster(t *testing.T, nodes, shards int, faults bool, cfg RaftNetConfig) *raftCluster {
	t.Helper()
	c := &raftCluster{t: t}
	var servers []raft.Server
	for i := range nodes {
		m := newMux(t, faults)
		c.muxes = append(c.muxes, m)
		rn := NewRaftNet(m, cfg)
		t.Cleanup(func() { rn.Close() }) // runs before the Mux's cleanup
		c.nets = append(c.nets, rn)
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprintf("node%d", i)), Address: raft.ServerAddress(m.Addr())})
	}
	hlog := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: os.Stderr})
	for s := range shards {
		var group []raftNode
		for i, rn := range c.nets {
			trans := rn.Shard(uint32(s))
			if got := string(trans.LocalAddr()); got != c.muxes[i].Addr() {
				t.Fatalf("LocalAddr %q, want %q", got, c.muxes[i].Addr())
			}
			rc := raft.DefaultConfig()
			rc.LocalID = servers[i].ID
			rc.Logger = hlog.Named(fmt.Sprintf("s%d-n%d", s, i))
			rc.HeartbeatTimeout = 500 * time.Millisecond
			rc.ElectionTimeout = 500 * time.Millisecond
			rc.LeaderLeaseTimeout = 250 * time.Millisecond
			rc.CommitTimeout = 20 * time.Millisecond
			rc.MaxAppendEntries = 256
			store := raft.NewInmemStore()
			fsm := &recFSM{}
			r, err := raft.NewRaft(rc, fsm, store, store, raft.NewInmemSnapshotStore(), trans)
			if err != nil {
				t.Fatalf("shard %d node %d: NewRaft: %v", s, i, err)
			}
			t.Cleanup(func() { r.Shutdown().Error() })
			if err := r.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
				t.Fatalf("bootstrap: %v", err)
			}
			group = append(group, raftNode{r, fsm})
		}
		c.groups = append(c.groups, group)
	}
	return c
}

// apply commits cmd on shard s through whichever node leads it, retrying
// while leadership settles, and returns that node's index.
func (c *raftCluster) apply(s int, cmd string, among ...int) int {
	c.t.Helper()
	leader := -1
	waitFor(c.t, 60*time.Second, fmt.Sprintf("shard %d to commit %q", s, cmd), func() bool {
		for i, n := range c.groups[s] {
			if len(among) > 0 && !slices.Contains(among, i) {
				continue
			}
			if n.r.State() == raft.Leader && n.r.Apply([]byte(cmd), 5*time.Second).Error() == nil {
				leader = i
				return true
			}
		}
		return false
	})
	return leader
}

// waitApplied waits until every listed node (all if none) of shard s applied cmd.
func (c *raftCluster) waitApplied(s int, cmd string, nodes ...int) {
	c.t.Helper()
	waitFor(c.t, waitTimeout, fmt.Sprintf("shard %d: %q on nodes %v", s, cmd, nodes), func() bool {
		for i, n := range c.groups[s] {
			if len(nodes) > 0 && !slices.Contains(nodes, i) {
				continue
			}
			if !slices.Contains(n.fsm.get(), cmd) {
				return false
			}
		}
		return true
	})
}

// TestRaftNetShardsReplicate runs 3 nodes × 4 shards of raft over RaftNet:
// every shard elects a leader and replicates, with no crosstalk, over one
// connection per direction per node pair.
func TestRaftNetShardsReplicate(t *testing.T) {
	for _, inflight := range []int{1, 8} {
		t.Run(fmt.Sprintf("inflight=%d", inflight), func(t *testing.T) {
			const shards = 4
			c := newRaftCluster(t, 3, shards, false, RaftNetConfig{MaxInflight: inflight})
			for s := range shards {
				for k := range 20 {
					cmd := fmt.Sprintf("shard-%d-cmd-%d", s, k)
					c.apply(s, cmd)
				}
				c.waitApplied(s, fmt.Sprintf("shard-%d-cmd-%d", s, 19))
			}
			for s, group := range c.groups {
				for i, n := range group {
					for _, got := range n.fsm.get() {
						var gs, k int
						if _, err := fmt.Sscanf(got, "shard-%d-cmd-%d", &gs, &k); err != nil || gs != s {
							t.Errorf("shard %d node %d applied %q", s, i, got)
						}
					}
				}
			}
			// Each node dialed each other node once and accepted once: four
			// connections, however many shards.
			for i, m := range c.muxes {
				if n := trackedConns(m); n > 4 {
					t.Errorf("node %d holds %d connections, want at most 4 for 2 peers", i, n)
				}
			}
		})
	}
}

// TestRaftNetPartition cuts the leader of shard 0 off with the fault
// switch: the other two elect a new leader and commit without it, and it
// catches up once healed.
func TestRaftNetPartition(t *testing.T) {
	const shards = 2
	c := newRaftCluster(t, 3, shards, true, RaftNetConfig{Timeout: 2 * time.Second})
	old := c.apply(0, "before")
	c.apply(1, "before")
	c.waitApplied(0, "before")

	var others []int
	var otherAddrs []string
	for i, m := range c.muxes {
		if i != old {
			others = append(others, i)
			otherAddrs = append(otherAddrs, m.Addr())
		}
	}
	c.muxes[old].Faults().Block(otherAddrs...)

	// Nothing of the cut-off node's reaches the others and the reverse:
	// its dials fail, and the majority moves on without it.
	if _, err := c.muxes[old].dial(otherAddrs[0], key{KindRaftNet, 0}, time.Second); !errors.Is(err, ErrBlocked) {
		t.Fatalf("dial from the blocked side: %v, want ErrBlocked", err)
	}
	for s := range shards {
		c.apply(s, "during", others...)
		c.waitApplied(s, "during", others...)
	}
	if slices.Contains(c.groups[0][old].fsm.get(), "during") {
		t.Fatal("the partitioned node applied an entry committed during the partition")
	}

	c.muxes[old].Faults().Heal()
	for s := range shards {
		c.waitApplied(s, "during")
	}
}

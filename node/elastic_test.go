package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"tally/client"
	"tally/internal/testcluster"
	"tally/node"
)

// Elastic membership: nodes join and get replicas, leave by
// decommission, and dead ones are removed and replaced, with every count
// exact throughout.

const elasticShards = 8

// writeCounters adds i+1 to counter i (of n), through every node in turn.
func writeCounters(t *testing.T, tc *testcluster.Cluster, n int) map[string]int64 {
	t.Helper()
	want := map[string]int64{}
	c := client.New(tc.HTTPAddrs(), client.WithRetryDeadline(60*time.Second))
	ctx := testcluster.Ctx(t, 2*time.Minute)
	for i := range n {
		name := fmt.Sprintf("elastic-%d", i)
		if _, err := c.Incr(ctx, name, int64(i+1)); err != nil {
			t.Fatalf("incr %s: %v", name, err)
		}
		want[name] = int64(i + 1)
	}
	return want
}

// checkCounts reads every counter linearizably through addr.
func checkCounts(t *testing.T, addr string, want map[string]int64) {
	t.Helper()
	c := client.New([]string{addr}, client.WithRetryDeadline(60*time.Second))
	ctx := testcluster.Ctx(t, 2*time.Minute)
	for name, v := range want {
		got, err := c.Get(ctx, name, client.Linearizable)
		if err != nil {
			t.Fatalf("get %s via %s: %v", name, addr, err)
		}
		if got.Value != v {
			t.Fatalf("%s = %d via %s, want %d", name, got.Value, addr, v)
		}
	}
}

// placed reports whether, as node n sees it, every shard has exactly
// replicas voters, no learners and no replica on the nodes in without,
// and every node in even holds its share ±1. It says what is off.
func placed(n *node.Node, replicas int, even []string, without ...string) (bool, string) {
	st := n.ClusterDetail(context.Background())
	counts := map[string]int{}
	for _, s := range st.Shards {
		if len(s.Replicas) != replicas || len(s.Learners) != 0 {
			return false, fmt.Sprintf("shard %d: voters %v learners %v", s.ID, s.Replicas, s.Learners)
		}
		for _, r := range s.Replicas {
			if slices.Contains(without, r) {
				return false, fmt.Sprintf("shard %d still has %s", s.ID, r)
			}
			counts[r]++
		}
	}
	share := float64(len(st.Shards)*replicas) / float64(len(even))
	for _, id := range even {
		if c := float64(counts[id]); c < share-1 || c > share+1 {
			return false, fmt.Sprintf("%s holds %d replicas, share %.1f (%v)", id, counts[id], share, counts)
		}
	}
	return true, ""
}

func waitPlaced(t *testing.T, n *node.Node, replicas int, even []string, without ...string) {
	t.Helper()
	var why string
	testcluster.WaitFor(t, "replicas placed ("+strings.Join(even, ",")+")", 3*time.Minute, func() bool {
		var ok bool
		ok, why = placed(n, replicas, even, without...)
		return ok
	})
	if why != "" {
		t.Log(why)
	}
}

// waitDigestsAgree waits until every live node's replica of each shard
// has applied the same index with the same digest.
func waitDigestsAgree(t *testing.T, tc *testcluster.Cluster) {
	t.Helper()
	testcluster.WaitFor(t, "replicas agree", 2*time.Minute, func() bool {
		type rep struct {
			idx    uint64
			digest string
		}
		seen := map[uint32][]rep{}
		for _, n := range tc.Nodes {
			if n == nil {
				continue
			}
			for _, d := range n.ShardDigests() {
				seen[d.ID] = append(seen[d.ID], rep{d.AppliedIndex, d.Digest})
			}
		}
		for _, reps := range seen {
			for _, r := range reps[1:] {
				if r != reps[0] {
					return false
				}
			}
		}
		return len(seen) == elasticShards
	})
}

// fourNodes starts three nodes, writes 200 counters and adds a fourth,
// returning once the replicas are spread over all four.
func fourNodes(t *testing.T) (*testcluster.Cluster, map[string]int64, *node.Node) {
	t.Helper()
	tc := testcluster.Start(t, 3, elasticShards)
	want := writeCounters(t, tc, 200)
	n4 := tc.Add(nil)
	waitPlaced(t, n4, 3, []string{"n1", "n2", "n3", "n4"})
	return tc, want, n4
}

// TestJoinedNodeGetsReplicas: a fourth node that joins a formed 3-node
// cluster is given its share of the replicas (8 shards × 3 ÷ 4 = 6), each
// caught up from its shard's leader, and then holds the same data.
func TestJoinedNodeGetsReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc, want, n4 := fourNodes(t)
	if len(n4.ShardDigests()) < 5 {
		t.Fatalf("n4 hosts %d replicas", len(n4.ShardDigests()))
	}
	waitDigestsAgree(t, tc)
	checkCounts(t, n4.HTTPAddr(), want)
	// The new replicas vote: with n1 down every shard still has a quorum.
	tc.Nodes[0].Kill()
	tc.Nodes[0] = nil
	checkCounts(t, n4.HTTPAddr(), want)
}

// TestDecommissionMovesEverythingOff: a decommissioned node hands its
// replicas and leaderships to the others and ends "left"; on a cluster
// that could not hold the replicas without it, decommission is refused
// and changes nothing.
func TestDecommissionMovesEverythingOff(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.Start(t, 3, elasticShards)
	base := "http://" + tc.Nodes[0].HTTPAddr()
	a := testcluster.Do(t, "POST", base+"/v1/cluster/nodes/n2/decommission", "", nil)
	if a.Status != 409 || testcluster.ErrCode(a) != "membership_refused" {
		t.Fatalf("decommission on 3 nodes of 3 replicas: %d %s", a.Status, a.Body)
	}
	if a := testcluster.Do(t, "POST", base+"/v1/cluster/nodes/nobody/decommission", "", nil); a.Status != 404 {
		t.Fatalf("decommission of a stranger: %d %s", a.Status, a.Body)
	}
	want := writeCounters(t, tc, 200)
	n4 := tc.Add(nil)
	waitPlaced(t, n4, 3, []string{"n1", "n2", "n3", "n4"})

	a = testcluster.Do(t, "POST", base+"/v1/cluster/nodes/n2/decommission", "", nil)
	if a.Status != 200 || a.Body["state"] != "leaving" {
		t.Fatalf("decommission n2: %d %s", a.Status, a.Body)
	}
	waitPlaced(t, n4, 3, []string{"n1", "n3", "n4"}, "n2")
	testcluster.WaitFor(t, "n2 left, leading and hosting nothing", 2*time.Minute, func() bool {
		var ans struct {
			Members []struct{ ID, State string }
			Shards  []struct{ Leader string }
		}
		raw, _ := json.Marshal(testcluster.Do(t, "GET", base+"/v1/cluster", "", nil).Body)
		if err := json.Unmarshal(raw, &ans); err != nil {
			return false
		}
		for _, s := range ans.Shards {
			if s.Leader == "n2" || s.Leader == "" {
				return false
			}
		}
		for _, m := range ans.Members {
			if m.ID == "n2" && m.State != "left" {
				return false
			}
		}
		return len(tc.Nodes[1].ShardDigests()) == 0
	})
	// Stopping a left node costs nothing.
	tc.Nodes[1].Kill()
	tc.Nodes[1] = nil
	checkCounts(t, tc.Nodes[0].HTTPAddr(), want)
	waitDigestsAgree(t, tc)
}

// waitDead waits until gossip tells n that id is dead.
func waitDead(t *testing.T, n *node.Node, id string) {
	t.Helper()
	last := ""
	defer func() {
		if t.Failed() {
			t.Logf("%s as %s last saw it: %s", id, n.ID(), last)
		}
	}()
	testcluster.WaitFor(t, "gossip to see "+id+" dead", time.Minute, func() bool {
		for _, m := range n.ClusterStatus().Members {
			if m.ID == id {
				last = m.State
				return m.State == "dead"
			}
		}
		return false
	})
}

// TestRemoveDeadNode: a node that died for good is removed from every
// shard and its replicas are placed on the live nodes; removal is refused
// while the node is alive, and where it would need a quorum that is gone.
func TestRemoveDeadNode(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc, want, n4 := fourNodes(t)
	base := "http://" + n4.HTTPAddr()
	if a := testcluster.Do(t, "DELETE", base+"/v1/cluster/nodes/n3", "", nil); a.Status != 409 || !strings.Contains(fmt.Sprint(a.Body), "alive") {
		t.Fatalf("removing a live node: %d %s", a.Status, a.Body)
	}
	tc.Nodes[2].Kill()
	tc.Nodes[2] = nil
	waitDead(t, n4, "n3")
	a := testcluster.Do(t, "DELETE", base+"/v1/cluster/nodes/n3", "", nil)
	if a.Status != 200 || a.Body["state"] != "removed" {
		t.Fatalf("remove n3: %d %s", a.Status, a.Body)
	}
	waitPlaced(t, n4, 3, []string{"n1", "n2", "n4"}, "n3")
	checkCounts(t, n4.HTTPAddr(), want)
	waitDigestsAgree(t, tc)
	// Every shard is on n1, n2 and n4 now: with two of them dead, removing
	// one would need a quorum that is not there.
	tc.Nodes[1].Kill()
	tc.Nodes[1] = nil
	tc.Nodes[0].Kill()
	tc.Nodes[0] = nil
	waitDead(t, n4, "n1")
	a = testcluster.Do(t, "DELETE", base+"/v1/cluster/nodes/n1", "", nil)
	if a.Status != 409 || !strings.Contains(fmt.Sprint(a.Body), "quorum") {
		t.Fatalf("removing n1 with two of three replicas dead: %d %s", a.Status, a.Body)
	}
}

// freePort returns a loopback port nothing listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestAdvertisedAddresses: nodes that bind one address and advertise
// another are dialed at the advertised one, by raft (the shards'
// configurations hold it) and by clients (members list it).
func TestAdvertisedAddresses(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.StartWith(t, 3, 2, func(c *node.Config) {
		raft, http := freePort(t), freePort(t)
		c.RaftAddr, c.AdvertiseRaft = fmt.Sprintf("127.0.0.1:%d", raft), fmt.Sprintf("localhost:%d", raft)
		c.HTTPAddr, c.AdvertiseHTTP = fmt.Sprintf("127.0.0.1:%d", http), fmt.Sprintf("localhost:%d", http)
	})
	want := writeCounters(t, tc, 20)
	checkCounts(t, tc.Nodes[2].HTTPAddr(), want)
	st := tc.Nodes[0].ClusterStatus()
	for _, m := range st.Members {
		if !strings.HasPrefix(m.HTTP, "localhost:") {
			t.Fatalf("member %s gossips HTTP %s, not its advertised address", m.ID, m.HTTP)
		}
	}
	for _, d := range tc.Nodes[0].ShardDigests() {
		c, err := tc.Nodes[0].ShardForTest(d.ID).Configuration()
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range c.Servers {
			if !strings.HasPrefix(s.Addr, "localhost:") {
				t.Fatalf("shard %d lists %s at %s, not its advertised address", d.ID, s.ID, s.Addr)
			}
		}
	}
	if _, err := node.Start(node.Config{ID: "x", DataDir: t.TempDir(), AdvertiseRaft: "localhost"}); err == nil || !strings.Contains(err.Error(), "--advertise-raft") {
		t.Fatalf("advertising an address without a port: %v", err)
	}
}

package resp

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"tally/placement"
)

// fakeCluster is two RESP listeners over one backend, with two shards
// whose leadership the test moves between them.
type fakeCluster struct {
	mu      sync.Mutex
	leaders [2]string // shard → node id
	addrs   map[string]string
	servers map[string]*Server
}

type fakeRouter struct {
	fc   *fakeCluster
	self string
}

func (r fakeRouter) Topology() (Topology, error) {
	fc := r.fc
	fc.mu.Lock()
	defer fc.mu.Unlock()
	t := Topology{Self: r.self}
	for _, id := range []string{"n1", "n2"} {
		t.Nodes = append(t.Nodes, TopologyNode{ID: id, RESP: fc.addrs[id]})
	}
	for s := range 2 {
		first, last := placement.SlotRange(uint32(s), 2)
		t.Shards = append(t.Shards, TopologyShard{First: first, Last: last, Leader: fc.leaders[s], Replicas: []string{"n1", "n2"}})
	}
	return t, nil
}

func (r fakeRouter) Owner(key string) (int, string, bool, bool, bool) {
	fc := r.fc
	fc.mu.Lock()
	defer fc.mu.Unlock()
	slot := placement.Slot(key)
	leader := fc.leaders[placement.SlotShard(slot, 2)]
	return slot, fc.addrs[leader], leader == r.self, true, true
}

func startCluster(t *testing.T, b Core, redirect Redirect) *fakeCluster {
	fc := &fakeCluster{leaders: [2]string{"n1", "n2"}, addrs: map[string]string{}, servers: map[string]*Server{}}
	for _, id := range []string{"n1", "n2"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		fc.addrs[id] = ln.Addr().String()
		fc.servers[id] = serveTest(t, ln, Config{Core: b, NodeID: id, Router: fakeRouter{fc, id}, Redirect: redirect})
	}
	return fc
}

// keyOnShard finds a key whose slot belongs to shard s of 2.
func keyOnShard(s uint32, i int) string {
	for j := 0; ; j++ {
		k := fmt.Sprintf("k%d-%d", i, j)
		if placement.SlotShard(placement.Slot(k), 2) == s {
			return k
		}
	}
}

func TestClusterCommands(t *testing.T) {
	fc := startCluster(t, newMem(), Moved)
	c := redis.NewClient(&redis.Options{Addr: fc.addrs["n1"], Protocol: 2})
	defer c.Close()
	ctx := context.Background()
	//lint:ignore SA1019 CLUSTER SLOTS is what go-redis's cluster client and redis-benchmark still ask
	slots, err := c.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(slots) != 2 || slots[0].Start != 0 || slots[0].End != 8191 || slots[1].Start != 8192 || slots[1].End != 16383 {
		t.Fatalf("CLUSTER SLOTS: %+v", slots)
	}
	if slots[1].Nodes[0].Addr != fc.addrs["n2"] || slots[1].Nodes[0].ID != clusterID("n2") {
		t.Fatalf("shard 1's master: %+v, want n2 at %s", slots[1].Nodes[0], fc.addrs["n2"])
	}
	shards, err := c.ClusterShards(ctx).Result()
	if err != nil || len(shards) != 2 || shards[0].Nodes[0].Role != "master" {
		t.Fatalf("CLUSTER SHARDS: %+v %v", shards, err)
	}
	nodes, err := c.ClusterNodes(ctx).Result()
	if err != nil || !strings.Contains(nodes, "myself,master") || !strings.Contains(nodes, " 8192-16383") {
		t.Fatalf("CLUSTER NODES: %q %v", nodes, err)
	}
	if v, err := c.ClusterKeySlot(ctx, "{user1000}.following").Result(); err != nil || v != 3443 {
		t.Fatalf("KEYSLOT: %d %v", v, err)
	}
	if v, err := c.Do(ctx, "CLUSTER", "MYID").Text(); err != nil || v != clusterID("n1") {
		t.Fatalf("MYID: %q %v", v, err)
	}
	if v, err := c.ClusterInfo(ctx).Result(); err != nil || !strings.Contains(v, "cluster_state:ok") {
		t.Fatalf("INFO: %q %v", v, err)
	}
	// A plain client on the wrong node gets the redirect.
	k := keyOnShard(1, 0)
	err = c.Incr(ctx, k).Err()
	if err == nil || err.Error() != fmt.Sprintf("MOVED %d %s", placement.Slot(k), fc.addrs["n2"]) {
		t.Fatalf("INCR of a key n2 leads, on n1: %v", err)
	}
	// READONLY reads the replica here instead.
	if err := c.Do(ctx, "READONLY").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, k).Err(); err != nil {
		t.Fatalf("READONLY GET: %v", err)
	}
}

// go-redis's cluster client routes every key to its leader, follows
// MOVED when leadership changes, and counts exactly.
func TestClusterClientFollowsMoved(t *testing.T) {
	m := newMem()
	fc := startCluster(t, m, Moved)
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{fc.addrs["n1"]}, Protocol: 2})
	defer cc.Close()
	ctx := context.Background()
	keys := []string{keyOnShard(0, 0), keyOnShard(1, 0), keyOnShard(0, 1), keyOnShard(1, 1)}
	incr := func(rounds int) {
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for i := range rounds {
					if err := cc.Incr(ctx, keys[i%len(keys)]).Err(); err != nil {
						t.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	}
	incr(40)
	fc.mu.Lock()
	fc.leaders = [2]string{"n2", "n1"} // both shards change leader
	fc.mu.Unlock()
	incr(40)
	for _, k := range keys {
		if v, err := cc.Get(ctx, k).Int64(); err != nil || v != 16*40*2/4 {
			t.Errorf("%s = %d %v, want %d", k, v, err, 16*40*2/4)
		}
	}
}

// Forward mode serves every key on every node: plain clients need no
// cluster support.
func TestForwardModeServesEveryKey(t *testing.T) {
	fc := startCluster(t, newMem(), Forward)
	c := redis.NewClient(&redis.Options{Addr: fc.addrs["n1"], Protocol: 2})
	defer c.Close()
	if err := c.Incr(context.Background(), keyOnShard(1, 0)).Err(); err != nil {
		t.Fatal(err)
	}
}

package node

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestRoutingStateOutgrowsNodeMeta: nine members gossip the claims of a
// 64-shard cluster (every node leads seven or eight shards and hosts 21,
// with ids and a peer list long enough that the claims would not fit in
// memberlist's 512-byte node meta beside them). Every member learns every
// shard's leader, and a leadership that moves is learnt everywhere too.
func TestRoutingStateOutgrowsNodeMeta(t *testing.T) {
	const nodes, shards = 9, 64
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	var ids []string
	for i := range nodes {
		ids = append(ids, fmt.Sprintf("node-%02d.rack-%d.counters.example.internal", i, i%3))
	}
	var ms []*membership
	for i, id := range ids {
		self := meta{ID: id, HTTP: "127.0.0.1:1", Raft: fmt.Sprintf("10.0.0.%d:7071", i), Shards: shards,
			Formed: true, Peers: ids, Incarnation: strings.Repeat("a", 16)}
		m, err := startMembership(self, "127.0.0.1:0", "", nil, nil, log)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.shutdown(false) })
		if len(self.encode()) > 512 {
			t.Fatalf("the node meta alone is %d bytes", len(self.encode()))
		}
		ms = append(ms, m)
	}
	for _, m := range ms[1:] {
		if _, err := m.join([]string{ms[0].addr()}); err != nil {
			t.Fatal(err)
		}
	}
	for i, m := range ms {
		m.update(func(me *meta) {
			me.Leading = map[uint32]uint64{}
			for s := range shards {
				if s%nodes == i {
					me.Leading[uint32(s)] = 3
				}
				if (s+i)%3 == 0 {
					me.Hosted = append(me.Hosted, uint32(s))
				}
			}
		})
	}
	leaderEverywhere := func(s uint32, want string) bool {
		for _, m := range ms {
			if id, _, ok := m.leaderOf(s); !ok || id != want {
				return false
			}
		}
		return true
	}
	waitUntil(t, 30*time.Second, "every member to learn every shard's leader", func() bool {
		for s := range shards {
			if !leaderEverywhere(uint32(s), ids[s%nodes]) {
				return false
			}
		}
		return true
	})
	for _, m := range ms {
		for _, mb := range m.snapshot() {
			if len(mb.Hosted) != 21 && len(mb.Hosted) != 22 {
				t.Fatalf("%s sees %s host %d shards", m.self.ID, mb.ID, len(mb.Hosted))
			}
		}
	}
	// Shard 0 moves from node 0 to node 1 at a higher term.
	ms[0].update(func(me *meta) { delete(me.Leading, 0) })
	ms[1].update(func(me *meta) { me.Leading[0] = 4 })
	waitUntil(t, 30*time.Second, "the moved leadership to be learnt", func() bool { return leaderEverywhere(0, ids[1]) })
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMetaCarriesReplicas: the node meta round-trips the cluster's replica
// count, which a node that joins later adopts; a meta from a version
// without it (it ends after the incarnation) reads as 0.
func TestMetaCarriesReplicas(t *testing.T) {
	m := meta{ID: "n1", HTTP: "h", Raft: "r", Shards: 8, Formed: true, Peers: []string{"n1", "n2"}, Incarnation: "0123456789abcdef", Replicas: 5}
	got, err := decodeMeta(m.encode())
	if err != nil || got.Replicas != 5 || got.Incarnation != m.Incarnation || got.ID != "n1" {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	b := m.encode()
	old, err := decodeMeta(b[:len(b)-1]) // without the trailing replica count
	if err != nil || old.Replicas != 0 || old.Incarnation != m.Incarnation {
		t.Fatalf("older meta: %+v, %v", old, err)
	}
}

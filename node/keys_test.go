package node_test

import (
	"fmt"
	"testing"
	"time"

	"tally/internal/testcluster"
	"tally/node"
	"tally/placement"
)

// Delete, Set, Expire and the set-style actor operations on a 3-node
// cluster, called on a node that leads none of the shards involved as
// often as one that does (the cluster routes and forwards).
func TestWholeCounterOperations(t *testing.T) {
	tc := testcluster.Start(t, 3, 4)
	ctx := testcluster.Ctx(t, 90*time.Second)
	a, b := tc.Nodes[0], tc.Nodes[1]

	// Actors: several members in one call, duplicates counted once.
	changed, v, err := a.Actors(ctx, "post", []string{"u1", "u2", "u1", "u3"}, true)
	if err != nil || changed != 3 || v != 3 {
		t.Fatalf("add actors: %d changed, value %d, %v", changed, v, err)
	}
	if k, err := b.ActorCount(ctx, "post", node.Linearizable); err != nil || k != 3 {
		t.Fatalf("ActorCount = %d, %v; want 3", k, err)
	}
	changed, v, err = b.Actors(ctx, "post", []string{"u2", "nobody"}, false)
	if err != nil || changed != 1 || v != 2 {
		t.Fatalf("remove actors: %d changed, value %d, %v", changed, v, err)
	}
	if _, _, err := a.Actors(ctx, "post", []string{"ok", "bad/actor"}, true); codeOf(err) != node.CodeBadActor {
		t.Fatalf("a bad actor: %v", err)
	}
	if k, err := a.ActorCount(ctx, "post", node.Linearizable); err != nil || k != 2 {
		t.Fatalf("after a refused call: ActorCount = %d, %v; want 2 (nothing applied)", k, err)
	}

	// Set clears the actor set and imports the value.
	if err := b.Set(ctx, "post", 40, 0); err != nil {
		t.Fatal(err)
	}
	if k, _ := a.ActorCount(ctx, "post", node.Linearizable); k != 0 {
		t.Fatalf("SET kept %d actors", k)
	}
	if r, err := a.Read(ctx, node.ReadRequest{Name: "post"}); err != nil || r.Value != 40 || !r.ExpiresAt.IsZero() {
		t.Fatalf("after set: %+v, %v", r, err)
	}
	if err := a.Set(ctx, "w", 5, time.Hour); err != nil {
		t.Fatal(err)
	}
	if r, err := b.Read(ctx, node.ReadRequest{Name: "w"}); err != nil || r.Value != 5 || r.ExpiresAt.IsZero() {
		t.Fatalf("set with ttl: %+v, %v", r, err)
	}
	if err := a.Set(ctx, "w", 1, time.Microsecond); codeOf(err) != node.CodeBadTTL {
		t.Fatalf("set with a sub-millisecond ttl: %v", err)
	}

	// Expire, judged on the leader, only for a counter that exists.
	if ok, err := b.Expire(ctx, "post", time.Minute); err != nil || !ok {
		t.Fatalf("expire: %v %v", ok, err)
	}
	r, err := a.Read(ctx, node.ReadRequest{Name: "post"})
	if err != nil || r.ExpiresAt.IsZero() || time.Until(r.ExpiresAt) > time.Minute+5*time.Second {
		t.Fatalf("after expire: %+v, %v", r, err)
	}
	if ok, err := a.Expire(ctx, "missing", time.Minute); err != nil || ok {
		t.Fatalf("expire of a missing counter: %v %v", ok, err)
	}
	if r, _ := a.Read(ctx, node.ReadRequest{Name: "missing"}); r.Value != 0 || !r.ExpiresAt.IsZero() {
		t.Fatalf("expire created a counter: %+v", r)
	}
	if _, err := a.Expire(ctx, "post", 0); codeOf(err) != node.CodeBadTTL {
		t.Fatalf("expire 0: %v", err)
	}
	if ok, err := a.Expire(ctx, "post", 50*time.Millisecond); err != nil || !ok {
		t.Fatalf("short expire: %v %v", ok, err)
	}
	testcluster.WaitFor(t, "post to expire", 30*time.Second, func() bool {
		r, err := b.Read(ctx, node.ReadRequest{Name: "post"})
		return err == nil && r.Value == 0
	})

	// Delete is idempotent and says whether something was there.
	if _, err := a.Add(ctx, node.AddRequest{Name: "gone", Delta: 3}); err != nil {
		t.Fatal(err)
	}
	for i, want := range []bool{true, false} {
		if ok, err := b.Delete(ctx, "gone"); err != nil || ok != want {
			t.Fatalf("delete %d: %v %v, want %v", i, ok, err, want)
		}
	}
	if r, _ := a.Read(ctx, node.ReadRequest{Name: "gone"}); r.Value != 0 {
		t.Fatalf("deleted counter reads %d", r.Value)
	}
}

// Deleting a split counter empties every sub-counter; the counter keeps
// its split factor, refuses SET and EXPIRE, and counts again afterwards.
func TestDeleteSplitCounter(t *testing.T) {
	tc := testcluster.Start(t, 3, 4)
	ctx := testcluster.Ctx(t, 90*time.Second)
	a, b := tc.Nodes[0], tc.Nodes[2]
	const name = "hot"
	if _, err := a.Split(ctx, node.SplitRequest{Name: name, Factor: 4}); err != nil {
		t.Fatal(err)
	}
	// Adds from every node land on different sub-counters.
	for i := range 40 {
		if _, err := tc.Nodes[i%3].Add(ctx, node.AddRequest{Name: name, Delta: 1, IdempotencyKey: fmt.Sprint("k", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := b.Read(ctx, node.ReadRequest{Name: name}); err != nil || r.Value != 40 || r.Split != 4 {
		t.Fatalf("before delete: %+v, %v", r, err)
	}
	if err := b.Set(ctx, name, 1, 0); codeOf(err) != node.CodeCounterSplit {
		t.Fatalf("SET on a split counter: %v", err)
	}
	if _, err := b.Expire(ctx, name, time.Minute); codeOf(err) != node.CodeCounterSplit {
		t.Fatalf("EXPIRE on a split counter: %v", err)
	}
	// A node that never saw the split still deletes every sub-counter.
	b.ForgetSplitsForTest()
	if ok, err := b.Delete(ctx, name); err != nil || !ok {
		t.Fatalf("delete: %v %v", ok, err)
	}
	keys := a.KeyPlacement()
	for i := range 4 {
		vals, err := a.ReadForTest(ctx, keys.SubShard(name, i), []string{placement.SubName(name, i)}, true)
		if err != nil || vals[0].Value != 0 {
			t.Fatalf("sub-counter %d after delete: %+v, %v", i, vals, err)
		}
	}
	r, err := a.Read(ctx, node.ReadRequest{Name: name})
	if err != nil || r.Value != 0 || r.Split != 4 {
		t.Fatalf("after delete: %+v, %v (the split factor stays)", r, err)
	}
	for i := range 12 {
		if _, err := tc.Nodes[i%3].Add(ctx, node.AddRequest{Name: name, Delta: 2}); err != nil {
			t.Fatal(err)
		}
	}
	if r, err := b.Read(ctx, node.ReadRequest{Name: name}); err != nil || r.Value != 24 {
		t.Fatalf("after counting again: %+v, %v", r, err)
	}
}

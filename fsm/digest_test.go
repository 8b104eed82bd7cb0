package fsm

import "testing"

func TestDigestFollowsState(t *testing.T) {
	apply := func(m *Machine, ops ...Op) {
		t.Helper()
		m.Apply(&Entry{Time: 1e9, Ops: ops})
	}
	a, b := New(Config{}), New(Config{})
	if a.Digest() != b.Digest() {
		t.Fatal("two empty machines differ")
	}
	apply(a, Op{Kind: OpAdd, Name: "x", Delta: 2}, Op{Kind: OpAdd, Name: "y", Delta: 1})
	apply(b, Op{Kind: OpAdd, Name: "y", Delta: 1})
	if a.Digest() == b.Digest() {
		t.Fatal("different states share a digest")
	}
	// Same counters reached in another order and through other entries:
	// same digest.
	apply(b, Op{Kind: OpAdd, Name: "x", Delta: 1}, Op{Kind: OpAdd, Name: "x", Delta: 1, Key: "k"})
	if a.Digest() != b.Digest() {
		t.Fatal("equal states differ")
	}
	apply(a, Op{Kind: OpActorAdd, Name: "x", Actor: "u1"})
	apply(b, Op{Kind: OpAdd, Name: "x", Delta: 1})
	if a.Digest() == b.Digest() {
		t.Fatal("an actor set does not count in the digest")
	}
	// A restored snapshot has the same digest.
	if c := restored(t, Config{}, snapBytes(t, a.Snapshot())); a.Digest() != c.Digest() {
		t.Fatal("a restored snapshot differs")
	}
}

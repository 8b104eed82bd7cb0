package fsm

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

func del(name string) Op                 { return Op{Kind: OpDelete, Name: name} }
func set(name string, v, ttl int64) Op   { return Op{Kind: OpSet, Name: name, Delta: v, TTL: ttl} }
func expireIn(name string, ttl int64) Op { return Op{Kind: OpExpire, Name: name, TTL: ttl} }

func TestDeleteRemovesValueActorsAndExpiry(t *testing.T) {
	m := New(Config{})
	run(t, m, sec, []Op{add("a", 5), like("b", "u1"), like("b", "u2"), withTTL(add("w", 3), 1000)},
		ok(5), changed(1), changed(2), exp(ok(3), 2*sec))
	run(t, m, sec, []Op{del("a"), del("b"), del("w"), del("never")},
		changed(0), changed(0), changed(0), ok(0))
	if m.Counters() != 0 || m.IsMember("b", "u1") || m.ActorCount("b", sec) != 0 {
		t.Fatalf("after deletes: %d counters, member %v", m.Counters(), m.IsMember("b", "u1"))
	}
	// A like after the delete counts again from nothing; the stale heap
	// item of w's old window does not expire the new w.
	run(t, m, sec, []Op{like("b", "u1"), add("w", 1)}, changed(1), ok(1))
	run(t, m, 3*sec, nil)
	if v := m.Value("w"); v != 1 {
		t.Fatalf("w = %d after its deleted window's expiry passed, want 1", v)
	}
	// Deleting an expired counter finds nothing there.
	run(t, m, 3*sec, []Op{withTTL(add("x", 1), 1000)}, exp(ok(1), 4*sec))
	run(t, m, 5*sec, []Op{del("x")}, ok(0))
}

func TestDeleteKeepsSplitState(t *testing.T) {
	m := New(Config{})
	run(t, m, sec, []Op{add("h", 7), begin("h", 4, 8), end("h", 4)},
		ok(7), Result{Value: 7, Split: 1}, Result{Value: 7, Split: 4})
	run(t, m, sec, []Op{del("h"), del("h/2")},
		Result{Changed: true, Split: 4}, ok(0))
	if n, _ := m.Split("h"); n != 4 {
		t.Fatalf("split factor after delete = %d, want 4", n)
	}
	run(t, m, sec, []Op{add("h", 1)}, Result{Value: 1, Split: 4})
}

func TestSetImportsAValue(t *testing.T) {
	m := New(Config{})
	run(t, m, sec, []Op{like("a", "u1"), withTTL(add("w", 1), 1000)}, changed(1), exp(ok(1), 2*sec))
	// SET clears the actor set and the window (as Redis's SET clears a TTL).
	run(t, m, sec, []Op{set("a", 40, 0), set("w", 9, 0), set("t", -3, 500)},
		ok(40), ok(9), exp(ok(-3), sec+500*int64(time.Millisecond)))
	if m.IsMember("a", "u1") {
		t.Fatal("SET kept the actor set")
	}
	run(t, m, 3*sec, nil)
	if m.Value("w") != 9 || m.Value("t") != 0 {
		t.Fatalf("w = %d (no expiry any more), t = %d (expired)", m.Value("w"), m.Value("t"))
	}
	// 0 without a TTL deletes.
	run(t, m, 3*sec, []Op{set("w", 0, 0)}, ok(0))
	if m.Counters() != 1 {
		t.Fatalf("%d counters held, want only a", m.Counters())
	}
	// A like after SET counts on top of the set value.
	run(t, m, 3*sec, []Op{like("a", "u1")}, changed(41))
}

func TestSetAndExpireRefuseSplitCounters(t *testing.T) {
	m := New(Config{})
	run(t, m, sec, []Op{add("h", 2), begin("h", 2, 8)}, ok(2), Result{Value: 2, Split: 1})
	// Pending split: refused already.
	run(t, m, sec, []Op{set("h", 5, 0), expireIn("h", 100)},
		Result{Value: 2, Code: ErrSplit, Split: 1}, Result{Value: 2, Code: ErrSplit, Split: 1})
	run(t, m, sec, []Op{end("h", 2), set("h", 5, 0)}, Result{Value: 2, Split: 2}, Result{Value: 2, Code: ErrSplit, Split: 2})
	if v := m.Value("h"); v != 2 {
		t.Fatalf("refused SET changed the value to %d", v)
	}
}

func TestExpireOnTheLeaderClock(t *testing.T) {
	m := New(Config{})
	run(t, m, 10*sec, []Op{add("a", 1), like("b", "u")}, ok(1), changed(1))
	run(t, m, 10*sec, []Op{expireIn("a", 1000), expireIn("none", 1000)},
		Result{Value: 1, ExpiresAt: 11 * sec, Changed: true}, ok(0))
	if m.Counters() != 2 {
		t.Fatalf("EXPIRE of a missing counter created one: %d counters", m.Counters())
	}
	// A clock that steps back does not move the expiry earlier than the
	// machine's own clock says: it runs on LastTime.
	run(t, m, 5*sec, []Op{expireIn("b", 2000)}, Result{Value: 1, ExpiresAt: 12 * sec, Changed: true})
	// Shortening and lengthening both work (lazy heap deletion).
	run(t, m, 10*sec, []Op{expireIn("a", 5000)}, Result{Value: 1, ExpiresAt: 15 * sec, Changed: true})
	run(t, m, 11*sec, nil)
	if m.Value("a") != 1 {
		t.Fatal("the earlier expiry's heap item reclaimed the counter")
	}
	run(t, m, 12*sec, nil)
	if m.IsMember("b", "u") {
		t.Fatal("b did not expire")
	}
	run(t, m, 15*sec, []Op{expireIn("a", 1000)}, ok(0))
	if m.Counters() != 0 {
		t.Fatalf("%d counters left", m.Counters())
	}
}

func TestActorCount(t *testing.T) {
	m := New(Config{})
	run(t, m, sec, []Op{like("a", "u1"), like("a", "u2"), like("a", "u1"), like("a", "a-long-actor-name-over-15")},
		changed(1), changed(2), ok(2), changed(3))
	if n := m.ActorCount("a", sec); n != 3 {
		t.Fatalf("ActorCount = %d, want 3", n)
	}
	run(t, m, sec, []Op{unlike("a", "u2"), expireIn("a", 1000)}, changed(2), Result{Value: 2, ExpiresAt: 2 * sec, Changed: true})
	if n := m.ActorCount("a", sec); n != 2 {
		t.Fatalf("ActorCount = %d, want 2", n)
	}
	if n := m.ActorCount("a", 2*sec); n != 0 {
		t.Fatalf("ActorCount of an expired counter = %d", n)
	}
}

// The new kinds keep replicas equal: a decoded log and a restored
// snapshot reach the same state and the same snapshot bytes.
func TestKeyOpsReplicate(t *testing.T) {
	entries := []Entry{
		{Time: sec, Ops: []Op{add("a", 3), like("b", "u1"), like("b", "u2"), withTTL(add("w", 1), 5000)}},
		{Time: 2 * sec, Ops: []Op{expireIn("a", 4000), set("c", 8, 0), set("b", 2, 0), del("w")}},
		{Time: 3 * sec, Ops: []Op{set("d", 1, 1000), like("c", "u3"), expireIn("c", 10000)}},
		{Time: 7 * sec, Ops: []Op{add("a", 1), del("c")}},
	}
	a, b := New(Config{}), New(Config{})
	var c *Machine
	for i := range entries {
		if i == 2 {
			c = restored(t, Config{}, snapBytes(t, a.Snapshot()))
		}
		ra := a.Apply(&entries[i])
		e, err := DecodeEntry(AppendEntry(nil, &entries[i]))
		if err != nil {
			t.Fatal(err)
		}
		if rb := b.Apply(&e); !reflect.DeepEqual(ra, rb) {
			t.Fatalf("entry %d: %v vs decoded %v", i, ra, rb)
		}
		if c != nil {
			if rc := c.Apply(&entries[i]); !reflect.DeepEqual(ra, rc) {
				t.Fatalf("entry %d: %v vs restored %v", i, ra, rc)
			}
		}
	}
	sa := snapBytes(t, a.Snapshot())
	for _, m := range []*Machine{b, c} {
		if !reflect.DeepEqual(stateOf(a), stateOf(m)) || !bytes.Equal(sa, snapBytes(t, m.Snapshot())) || a.Digest() != m.Digest() {
			t.Fatal("replica diverged")
		}
	}
	// a expired at 6 s, so the add at 7 s began it anew.
	if a.Value("a") != 1 || a.Value("b") != 2 || a.Value("c") != 0 || a.Value("d") != 0 {
		t.Fatalf("end state %v", stateOf(a).values())
	}
}

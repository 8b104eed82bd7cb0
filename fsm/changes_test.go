package fsm

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// The changes of every Apply, played onto a copy, give exactly the state's
// values after it: whatever moved a counter (an add, a like, a set, a
// delete, an expiry) was recorded, and nothing else was.
func TestChangesReplayToState(t *testing.T) {
	m := New(Config{})
	m.TrackChanges(true)
	rng := rand.New(rand.NewPCG(1, 2))
	names := make([]string, 40) // more than the scan limit, so the map path runs
	for i := range names {
		names[i] = fmt.Sprintf("c%d", i)
	}
	copyOf := map[string]int64{}
	now := time.Unix(1_700_000_000, 0).UnixNano()
	for round := 0; round < 3000; round++ {
		now += int64(rng.IntN(300)) * int64(time.Millisecond)
		e := Entry{Time: now}
		for range 1 + rng.IntN(30) {
			name := names[rng.IntN(len(names))]
			if rng.IntN(4) == 0 {
				name = names[0] // a hot one
			}
			var op Op
			switch rng.IntN(10) {
			case 0:
				op = Op{Kind: OpActorAdd, Name: name, Actor: fmt.Sprint("u", rng.IntN(5))}
			case 1:
				op = Op{Kind: OpActorRemove, Name: name, Actor: fmt.Sprint("u", rng.IntN(5))}
			case 2:
				op = Op{Kind: OpDelete, Name: name}
			case 3:
				op = Op{Kind: OpSet, Name: name, Delta: int64(rng.IntN(5))}
			case 4:
				op = Op{Kind: OpExpire, Name: name, TTL: int64(1 + rng.IntN(2000))}
			case 5:
				op = Op{Kind: OpAdd, Name: name, Delta: 1, TTL: int64(1 + rng.IntN(2000))}
			case 6:
				op = Op{Kind: OpAdd, Name: name, Delta: 1, HasMax: true, Max: 3}
			case 7:
				op = keyed(name, int64(rng.IntN(3)-1), fmt.Sprint("k", rng.IntN(50))) // retries too
			default:
				op = add(name, int64(rng.IntN(5)-2))
			}
			e.Ops = append(e.Ops, op)
		}
		m.Apply(&e)
		seen := map[string]bool{}
		for _, c := range m.Changes() {
			if seen[c.Name] {
				t.Fatalf("round %d: %q changed twice in one entry", round, c.Name)
			}
			seen[c.Name] = true
			if c.Old == c.Value {
				t.Fatalf("round %d: %q recorded without moving (%d)", round, c.Name, c.Value)
			}
			if c.Old != copyOf[c.Name] {
				t.Fatalf("round %d: %q moved from %d, the copy has %d", round, c.Name, c.Old, copyOf[c.Name])
			}
			copyOf[c.Name] = c.Value
		}
		for _, name := range names {
			if got, want := copyOf[name], m.Value(name); got != want {
				t.Fatalf("round %d: %q: changes give %d, the state has %d", round, name, got, want)
			}
		}
	}
}

func TestChangesCoalesceAnEntry(t *testing.T) {
	m := New(Config{})
	m.TrackChanges(true)
	e := Entry{Time: 1, Ops: []Op{add("hot", 1), add("other", 1), add("hot", 1), add("net", 2), add("net", -2), add("hot", 1)}}
	m.Apply(&e)
	got := m.Changes()
	want := []Change{{Name: "hot", Old: 0, Value: 3}, {Name: "other", Old: 0, Value: 1}}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("changes %v, want %v (one per counter, net-zero left out)", got, want)
	}
	// Refused ops and retries move nothing.
	e = Entry{Time: 2, Ops: []Op{{Kind: OpAdd, Name: "hot", Delta: 1, HasMax: true, Max: 3}, keyed("k", 1, "id"), keyed("k", 1, "id")}}
	m.Apply(&e)
	if got := m.Changes(); fmt.Sprint(got) != fmt.Sprint([]Change{{Name: "k", Old: 0, Value: 1}}) {
		t.Fatalf("changes %v, want only the first keyed add", got)
	}
	// Untracked, nothing is kept.
	m.TrackChanges(false)
	m.Apply(&Entry{Time: 3, Ops: []Op{add("hot", 1)}})
	if got := m.Changes(); len(got) != 0 {
		t.Fatalf("untracked changes %v", got)
	}
}

func TestSnapshotEach(t *testing.T) {
	m := New(Config{})
	m.Apply(&Entry{Time: 1, Ops: []Op{add("a", 2), add("b", 1), add("b", -1), {Kind: OpAdd, Name: "gone", Delta: 1, TTL: 1}}})
	m.Apply(&Entry{Time: 1 + int64(time.Millisecond), Ops: []Op{add("c", -4)}})
	got := map[string]int64{}
	m.Snapshot().Each(func(name string, v int64) { got[name] = v })
	if fmt.Sprint(got) != fmt.Sprint(map[string]int64{"a": 2, "c": -4}) {
		t.Fatalf("Each gave %v, want a=2 c=-4 (no zero, no expired)", got)
	}
}

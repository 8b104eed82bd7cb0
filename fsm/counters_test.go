package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// The counter table against a map, under random puts and deletes of names
// from a small pool (so names come back after being deleted), with long
// names so that deletions fill the arena with garbage and compact it, and
// a burst of deletes that shrinks the index.
func TestCounterTableMatchesMap(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	tab := newCtrTable()
	defer tab.free()
	model := map[string]counter{}
	name := func(i int) string { return fmt.Sprintf("%d/%s", i, strings.Repeat("n", 200)) }
	check := func(step int) {
		got := checkCounters(tab)
		if len(got) != len(model) {
			t.Fatalf("step %d: %d counters, model %d", step, len(got), len(model))
		}
		for k, c := range model {
			if got[k] != c {
				t.Fatalf("step %d: %q = %+v, model %+v", step, k[:8], got[k], c)
			}
		}
	}
	for step := range 40_000 {
		nm := name(rng.IntN(6000))
		if rng.IntN(3) == 0 {
			if tab.del(nm) != (model[nm] != counter{}) {
				t.Fatalf("step %d: del disagrees", step)
			}
			delete(model, nm)
		} else {
			c := counter{value: int64(step) + 1, expiry: int64(rng.IntN(2))}
			tab.put(nm, c)
			model[nm] = c
		}
		if step%1000 == 0 {
			check(step)
		}
	}
	check(40_000)
	first, slots := tab.arena[0], len(tab.idx.slots)
	for i := 50; i < 6000; i++ {
		tab.del(name(i))
		delete(model, name(i))
	}
	check(40_001)
	if tab.arena[0] == first {
		t.Fatal("arena not compacted after deleting most counters")
	}
	if len(tab.idx.slots) >= slots {
		t.Fatalf("index of %d slots kept for %d counters", len(tab.idx.slots), tab.live)
	}
	for i := range 6000 { // and it grows back
		tab.put(name(i), counter{value: 1})
		model[name(i)] = counter{value: 1}
	}
	check(40_002)
}

// Deleting enough counters compacts the arena; a Snapshot taken before
// keeps writing exactly what it held, through the compaction and the
// copies of the record chunks Apply writes after it.
func TestCounterSnapshotSurvivesCompaction(t *testing.T) {
	m := New(Config{})
	long := strings.Repeat("x", 200)
	var ops []Op
	for i := range 3 * ctrChunkRecs {
		ops = append(ops, add(fmt.Sprint(i, long), int64(i+1)))
	}
	m.Apply(&Entry{Time: sec, Ops: ops})
	s := m.Snapshot()
	want := snapBytes(t, s)
	first := m.ctrs.chunks[0]
	arena := m.ctrs.arena[0]

	// Zero out most counters (each delete leaves its name as garbage) and
	// change the rest.
	ops = ops[:0]
	for i := range 3 * ctrChunkRecs {
		if i%10 == 0 {
			ops = append(ops, add(fmt.Sprint(i, long), 5))
		} else {
			ops = append(ops, add(fmt.Sprint(i, long), -int64(i+1)))
		}
	}
	m.Apply(&Entry{Time: 2 * sec, Ops: ops})
	if m.Counters() != 3*ctrChunkRecs/10+1 {
		t.Fatalf("%d counters left", m.Counters())
	}
	if m.ctrs.arena[0] == arena {
		t.Fatal("arena not compacted")
	}
	if m.ctrs.chunks[0] == first || first.refs.Load() != 1 {
		t.Fatalf("shared chunk written in place (refs %d)", first.refs.Load())
	}
	if got := snapBytes(t, s); !bytes.Equal(got, want) {
		t.Fatal("snapshot changed by later applies")
	}
	stateOf(m)
	if v := m.Value(fmt.Sprint(10, long)); v != 16 {
		t.Fatalf("value after compaction %d", v)
	}
	r := restored(t, Config{}, want)
	if r.Counters() != 3*ctrChunkRecs || r.Value(fmt.Sprint(7, long)) != 8 {
		t.Fatal("restored snapshot differs")
	}
	s.Release()
	if first.mem != nil || arena.mem != nil {
		t.Fatal("released snapshot's blocks not freed")
	}
}

// counterBytes returns what a counter costs the Machine: the Go heap it
// grows by plus the off-heap table, per counter, for n counters named like
// "views:video:<n>".
func counterBytes(tb testing.TB, n int) (heap, total float64) {
	return bytesPer(tb, New(Config{}), n,
		func(i int) Op { return add(fmt.Sprintf("views:video:%d", i), 1) },
		(*Machine).Counters, (*Machine).CounterBytes)
}

func TestCounterMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("stores 500k counters")
	}
	heap, total := counterBytes(t, 500_000)
	t.Logf("%.1f bytes per counter (%.1f on the Go heap)", total, heap)
	if !raceEnabled && (total > 72 || heap > 4) {
		t.Fatalf("%.1f bytes per counter (%.1f on the heap), want <= 72 (<= 4)", total, heap)
	}
}

func BenchmarkCounterMemory(b *testing.B) {
	var heap, total float64
	for b.Loop() {
		heap, total = counterBytes(b, 1_000_000)
	}
	b.ReportMetric(total, "bytes/counter")
	b.ReportMetric(heap, "heap-bytes/counter")
}

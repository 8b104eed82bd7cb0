package fsm

import (
	"fmt"
	"runtime"
	"testing"
)

// checkDedup returns t's records, oldest first, panicking if t breaks an
// internal invariant: every live record found through the index at its own
// number, nothing else in the index, expiries exactly for the records
// flagged, and chunks covering [head, tail).
func checkDedup(t *dedupTable) []dedupState {
	var out []dedupState
	if t.first%chunkRecs != 0 || t.head < t.first || t.tail > t.first+uint64(len(t.chunks))*chunkRecs {
		panic(fmt.Sprintf("chunks [%d, +%d) do not cover [%d, %d)", t.first, len(t.chunks), t.head, t.tail))
	}
	if t.head-t.first >= chunkRecs && t.head != t.tail {
		panic(fmt.Sprintf("chunk starting at %d kept past head %d", t.first, t.head))
	}
	for seq := t.head; seq != t.tail; seq++ {
		r := *t.rec(seq)
		if got, ok := t.lookup(keyHash{lo: r.key, hi: r.key2}); !ok || got != seq {
			panic(fmt.Sprintf("record %d (key %x) found at %d, %v", seq, r.key, got, ok))
		}
		exp, has := t.expires[seq]
		if has != (r.flags&recExpires != 0) || (has && exp == 0) {
			panic(fmt.Sprintf("record %d flags %#x, expiry %d, %v", seq, r.flags, exp, has))
		}
		r.flags &^= recExpires
		out = append(out, dedupState{Rec: r, ExpiresAt: exp})
	}
	used := 0
	for _, v := range t.idx.slots {
		if v != 0 {
			used++
		}
	}
	if used != t.len() || len(t.expires) > t.len() {
		panic(fmt.Sprintf("index holds %d, expiries %d, for %d records", used, len(t.expires), t.len()))
	}
	return out
}

// checkCounters returns t's counters by name, panicking if t breaks an
// internal invariant: every live record found through the index under its
// own name, nothing else indexed, the free list exactly the free records,
// actor sets exactly for the records flagged, and the live count right.
func checkCounters(t *ctrTable) map[string]counter {
	out := map[string]counter{}
	free := map[uint32]bool{}
	for _, r := range t.unused {
		if free[r] || r >= t.n || t.rec(r).name != 0 {
			panic(fmt.Sprintf("free list holds record %d badly", r))
		}
		free[r] = true
	}
	for r := uint32(0); r < t.n; r++ {
		rec := t.rec(r)
		if rec.name == 0 {
			if !free[r] || *rec != (ctrRec{}) {
				panic(fmt.Sprintf("record %d is neither live nor free", r))
			}
			continue
		}
		name := string(t.name(rec.name))
		if got, tag, ok := t.find(name); !ok || got != r || tag != rec.tag {
			panic(fmt.Sprintf("counter %q at %d found at %d, %v", name, r, got, ok))
		}
		if _, dup := out[name]; dup {
			panic(fmt.Sprintf("counter %q twice", name))
		}
		if _, has := t.actors[r]; has != (rec.actors != 0) {
			panic(fmt.Sprintf("counter %q actors flag %d, set %v", name, rec.actors, has))
		}
		out[name] = ctrOf(rec, t.actors, r)
	}
	used := 0
	for _, v := range t.idx.slots {
		if v != 0 {
			used++
		}
	}
	if used != t.live || len(out) != t.live || len(t.actors) > t.live {
		panic(fmt.Sprintf("index holds %d, records %d, actor sets %d, live %d", used, len(out), len(t.actors), t.live))
	}
	return out
}

// settleHeap collects until the heap stops shrinking and reads ms: earlier
// tests' Machines are freed only after their cleanups have run, which is a
// collection or two after they became garbage.
func settleHeap(ms *runtime.MemStats) {
	runtime.GC()
	runtime.ReadMemStats(ms)
	for range 10 {
		prev := ms.HeapAlloc
		runtime.Gosched()
		runtime.GC()
		runtime.ReadMemStats(ms)
		if ms.HeapAlloc >= prev {
			return
		}
	}
}

// bytesPer applies n ops (op(i), in entries of 1000) to m and returns what
// each cost: the Go heap m grew by (after a collection), and that plus
// m's off-heap table (tableBytes), per item; count must then say n.
func bytesPer(tb testing.TB, m *Machine, n int, op func(i int) Op, count func(*Machine) int, tableBytes func(*Machine) int64) (heap, total float64) {
	var ms runtime.MemStats
	settleHeap(&ms)
	before := ms.HeapAlloc
	ops := make([]Op, 1000)
	for i := 0; i < n; i += len(ops) {
		for j := range ops {
			ops[j] = op(i + j)
		}
		m.Apply(&Entry{Time: sec, Ops: ops})
	}
	ops = nil
	runtime.GC()
	runtime.ReadMemStats(&ms)
	if got := count(m); got != n {
		tb.Fatalf("%d held, want %d", got, n)
	}
	heap = float64(int64(ms.HeapAlloc)-int64(before)) / float64(n)
	total = heap + float64(tableBytes(m))/float64(n)
	runtime.KeepAlive(m)
	return heap, total
}

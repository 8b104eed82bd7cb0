package fsm

import (
	"bytes"
	"fmt"
	"runtime"
	"testing"
	"time"
)

const batchOps = 64

// benchEntry is a typical group-committed entry: 64 ops over 1024 counters,
// each with a 36-byte (UUID-sized) idempotency key unless keys is false.
func benchEntry(i int, keys bool) Entry {
	ops := make([]Op, batchOps)
	for j := range ops {
		n := i*batchOps + j
		ops[j] = Op{Kind: OpAdd, Name: fmt.Sprintf("tenant-%02d/counter-%04d", n%7, n%1024), Delta: int64(n%5) - 1}
		if keys {
			ops[j].Key = fmt.Sprintf("%08x-0000-4000-8000-%012x", i, j)
		}
	}
	return Entry{Time: int64(i) * int64(time.Millisecond), Ops: ops}
}

func BenchmarkApplyBatch(b *testing.B) {
	for _, keys := range []bool{false, true} {
		name := "unkeyed"
		if keys {
			name = "keyed"
		}
		b.Run(name, func(b *testing.B) {
			// Entries are 1ms apart and keys live 1s, so about 1000 entries'
			// worth (64k keys) stay remembered; the pool is long enough that
			// a key has expired before its entry comes round again.
			entries := make([]Entry, 4096)
			for i := range entries {
				entries[i] = benchEntry(i, keys)
			}
			m := New(Config{DedupTTL: time.Second})
			dst := make([]Result, 0, batchOps)
			now := int64(0)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				e := &entries[i%len(entries)]
				e.Time = now
				now += int64(time.Millisecond)
				dst = m.ApplyTo(dst[:0], e)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchOps), "ns/op-in-batch")
		})
	}
}

// BenchmarkApplyBatchActors: entries of 64 likes over 1024 counters by
// 8-byte actor ids, every one a change: the pool of entries is liked on
// even passes and unliked on odd ones, so sets grow to 256 actors and
// shrink back to nothing (dropping the set and the counter).
func BenchmarkApplyBatchActors(b *testing.B) {
	const pool = 4096
	var passes [2][]Entry
	for p, kind := range []OpKind{OpActorAdd, OpActorRemove} {
		passes[p] = make([]Entry, pool)
		for i := range pool {
			ops := make([]Op, batchOps)
			for j := range ops {
				n := i*batchOps + j
				ops[j] = Op{Kind: kind, Name: fmt.Sprintf("post-%04d/likes", n%1024), Actor: fmt.Sprintf("%08x", n)}
			}
			passes[p][i] = Entry{Ops: ops}
		}
	}
	m := New(Config{DedupTTL: time.Second})
	dst := make([]Result, 0, batchOps)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		e := &passes[(i/pool)%2][i%pool]
		e.Time = int64(i) * int64(time.Millisecond)
		dst = m.ApplyTo(dst[:0], e)
		if !dst[0].Changed {
			b.Fatal("op changed nothing")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchOps), "ns/op-in-batch")
}

// BenchmarkApplyBatchRateLimit: entries of 64 fixed-window limiter ops
// (max 100 per 1000 ms) over 1024 counters, 1 ms apart: every counter's
// window expires and is reclaimed about once a second.
func BenchmarkApplyBatchRateLimit(b *testing.B) {
	entries := make([]Entry, 1024)
	for i := range entries {
		ops := make([]Op, batchOps)
		for j := range ops {
			n := i*batchOps + j
			ops[j] = Op{Kind: OpAdd, Name: fmt.Sprintf("rate/10.0.%d.%d", n%1024/256, n%256), Delta: 1, HasMax: true, Max: 100, TTL: 1000}
		}
		entries[i] = Entry{Ops: ops}
	}
	m := New(Config{DedupTTL: time.Second})
	dst := make([]Result, 0, batchOps)
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		e := &entries[i%len(entries)]
		e.Time = int64(i) * int64(time.Millisecond)
		dst = m.ApplyTo(dst[:0], e)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*batchOps), "ns/op-in-batch")
}

// actorBytes measures the heap a Machine holds per actor after n likes of
// one counter by distinct 8-byte actor ids, decoded from entries as a
// follower gets them: the set's map and the actor strings.
func actorBytes(tb testing.TB, n int) float64 {
	m := New(Config{})
	m.Apply(&Entry{Time: 1, Ops: []Op{like("post", "first")}}) // the counter exists
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	before := ms.HeapAlloc
	const perEntry = 1000
	var buf []byte
	ops := make([]Op, 0, perEntry)
	for i := 0; i < n; i += perEntry {
		ops = ops[:0]
		for j := i; j < min(n, i+perEntry); j++ {
			ops = append(ops, like("post", fmt.Sprintf("%08x", j)))
		}
		buf = AppendEntry(buf[:0], &Entry{Time: 2, Ops: ops})
		e, err := DecodeEntry(buf)
		if err != nil {
			tb.Fatal(err)
		}
		m.Apply(&e)
	}
	ops, buf = nil, nil
	runtime.GC()
	runtime.ReadMemStats(&ms)
	after := ms.HeapAlloc
	if v := m.Value("post"); v != int64(n)+1 {
		tb.Fatalf("Value = %d, want %d", v, n+1)
	}
	runtime.KeepAlive(m)
	return float64(int64(after)-int64(before)) / float64(n)
}

func TestActorMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 200k actors")
	}
	per := actorBytes(t, 200_000)
	t.Logf("%.1f bytes per actor (8-byte ids, 200k actors in one counter)", per)
	if per > 64 && !raceEnabled {
		t.Fatalf("%.1f bytes per actor, want <= 64", per)
	}
}

func BenchmarkActorMemory(b *testing.B) {
	var per float64
	for b.Loop() {
		per = actorBytes(b, 200_000)
	}
	b.ReportMetric(per, "bytes/actor")
}

func BenchmarkEncodeEntry(b *testing.B) {
	e := benchEntry(1, true)
	buf := AppendEntry(nil, &e)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendEntry(buf[:0], &e)
	}
}

func BenchmarkDecodeEntry(b *testing.B) {
	e := benchEntry(1, true)
	buf := AppendEntry(nil, &e)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeEntry(buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSnapshot(b *testing.B) {
	m := New(Config{DedupTTL: time.Second})
	for i := range 1000 {
		e := benchEntry(i, true)
		m.Apply(&e)
	}
	b.Run("copy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			m.Snapshot()
		}
	})
	b.Run("write", func(b *testing.B) {
		s := m.Snapshot()
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.WriteTo(discard{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkSnapshotMillion: writing the snapshot of a million counters, and
// restoring it.
func BenchmarkSnapshotMillion(b *testing.B) {
	m := New(Config{})
	ops := make([]Op, 1000)
	for i := 0; i < 1_000_000; i += len(ops) {
		for j := range ops {
			ops[j] = Op{Kind: OpAdd, Name: fmt.Sprintf("views:video:%d", i+j), Delta: 1}
		}
		m.Apply(&Entry{Time: 1, Ops: ops})
	}
	var buf bytes.Buffer
	b.Run("write", func(b *testing.B) {
		for b.Loop() {
			buf.Reset()
			s := m.Snapshot()
			if _, err := s.WriteTo(&buf); err != nil {
				b.Fatal(err)
			}
			s.Release()
		}
		b.ReportMetric(float64(buf.Len()), "bytes")
	})
	b.Run("restore", func(b *testing.B) {
		r := New(Config{})
		for b.Loop() {
			if err := r.Restore(bytes.NewReader(buf.Bytes())); err != nil {
				b.Fatal(err)
			}
		}
	})
}

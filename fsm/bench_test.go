package fsm

import (
	"fmt"
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

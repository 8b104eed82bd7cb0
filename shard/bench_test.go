package shard

import (
	"context"
	"log/slog"
	"testing"

	"tally/fsm"
)

// BenchmarkProposeParallel measures group-committed single-op proposals on
// a single-replica in-memory shard.
func BenchmarkProposeParallel(b *testing.B) {
	// Discard raft's logs: they would interleave with the benchmark lines.
	g := startGroup(b, 1, func(_ int, c *Config) { c.Logger = slog.New(slog.DiscardHandler) })
	s := g.nodes[0].sh
	mark := g.batchMark()
	b.ReportAllocs()
	b.SetParallelism(16) // 16×GOMAXPROCS callers: enough to fill entries
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ops := []fsm.Op{add("bench", 1)}
		for pb.Next() {
			if _, err := s.Propose(context.Background(), ops); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
	entries := 0
	for _, n := range g.batchesSince(mark) {
		if n > 0 {
			entries++
		}
	}
	if entries > 0 {
		b.ReportMetric(float64(b.N)/float64(entries), "ops/entry")
	}
}

package shard

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"tally/fsm"
)

// BenchmarkProposeCoalesce: group commit with replication (3 in-memory
// replicas on loopback) and with multi-op proposals (a batch request's
// ops for one shard), beside BenchmarkProposeParallel's single replica
// and single op. ns/op is per Propose call; ops/entry shows how well the
// proposer coalesced concurrent calls into raft entries.
func BenchmarkProposeCoalesce(b *testing.B) {
	for _, c := range []struct{ replicas, ops int }{{3, 1}, {1, 16}, {3, 16}} {
		b.Run(fmt.Sprintf("replicas=%d/ops=%d", c.replicas, c.ops), func(b *testing.B) {
			g := startGroup(b, c.replicas, func(_ int, cfg *Config) { cfg.Logger = slog.New(slog.DiscardHandler) })
			s := g.nodes[g.waitLeader()].sh
			mark := g.batchMark()
			b.ReportAllocs()
			b.SetParallelism(16) // 16×GOMAXPROCS callers: enough to fill entries
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				ops := make([]fsm.Op, c.ops)
				for i := range ops {
					ops[i] = add(fmt.Sprintf("bench-%d", i), 1)
				}
				for pb.Next() {
					if _, err := s.Propose(context.Background(), ops); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			b.ReportMetric(float64(b.N*c.ops)/b.Elapsed().Seconds(), "incr/s")
			entries, ops := 0, 0
			for _, n := range g.batchesSince(mark) {
				if n > 0 {
					entries++
					ops += n
				}
			}
			if entries > 0 {
				b.ReportMetric(float64(ops)/float64(entries), "ops/entry")
			}
		})
	}
}

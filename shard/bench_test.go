package shard

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"

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

// BenchmarkApplyChanges: what keeping the changefeed costs the apply of
// an entry of 64 increments, on one hot counter and on 64 counters.
func BenchmarkApplyChanges(b *testing.B) {
	for _, wl := range []string{"hot", "spread"} {
		for _, keep := range []int{0, 65536} {
			b.Run(fmt.Sprintf("%s/retention=%d", wl, keep), func(b *testing.B) {
				sm := newStateMachine(fsm.Config{})
				sm.keepChanges(keep)
				ops := make([]fsm.Op, 64)
				for i := range ops {
					name := "hot"
					if wl == "spread" {
						name = fmt.Sprint("c", i)
					}
					ops[i] = fsm.Op{Kind: fsm.OpAdd, Name: name, Delta: 1}
				}
				data := fsm.AppendEntry(nil, &fsm.Entry{Time: 1, Ops: ops})
				logs := []*raft.Log{{Type: raft.LogCommand, Data: data}}
				b.ReportAllocs()
				for i := 0; b.Loop(); i++ {
					logs[0].Index = uint64(i + 1)
					sm.ApplyBatch(logs)
				}
			})
		}
	}
}

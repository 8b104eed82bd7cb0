package raftstore

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftwal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// benchShards is how many shards append at once in the benchmarks: a node
// in eight busy raft groups.
const benchShards = 8

// BenchmarkAppends compares the log stores under the shape of a node in
// several busy raft groups: benchShards shards appending one entry at a
// time each, at once, each waiting for its append to be durable (as raft
// does), with small (a batch of a few increments) and 4 KiB entries.
//
// It reports appends/s, the fsyncs each append cost (syncs/append, counted
// where the store issues them) and the process CPU per append
// (cpu-ns/append). The kinds:
//   - bolt: the shared raft-boltdb store with its commit loop;
//   - pebble: the shared pebble store;
//   - raft-wal: one hashicorp/raft-wal per shard, as raft-wal cannot hold
//     more than one log.
func BenchmarkAppends(b *testing.B) {
	for _, size := range []int{60, 4096} {
		for _, kind := range []string{KindBolt, KindPebble, "raft-wal"} {
			b.Run(fmt.Sprintf("kind=%s/size=%d", kind, size), func(b *testing.B) {
				appenders, syncs := benchStore(b, kind)
				benchAppends(b, size, appenders, syncs)
			})
		}
	}
}

// benchStore opens a store of kind with benchShards shards, and a function
// that counts its syncs so far.
func benchStore(b *testing.B, kind string) ([]func([]*raft.Log) error, func() uint64) {
	dir := b.TempDir()
	appenders := make([]func([]*raft.Log) error, benchShards)
	if kind == "raft-wal" {
		var syncs atomic.Uint64
		for id := range appenders {
			sub := filepath.Join(dir, fmt.Sprint(id))
			vfs := &countingWALFS{VFS: fs.New(), syncs: &syncs}
			if err := os.MkdirAll(sub, 0o755); err != nil {
				b.Fatal(err)
			}
			w, err := raftwal.Open(sub, raftwal.WithSegmentFiler(segment.NewFiler(sub, vfs)))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { w.Close() })
			appenders[id] = w.StoreLogs
		}
		return appenders, syncs.Load
	}
	s, err := OpenDir(dir, kind)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	for id := range appenders {
		l, err := s.Shard(uint32(id))
		if err != nil {
			b.Fatal(err)
		}
		appenders[id] = l.StoreLogs
	}
	return appenders, func() uint64 { return s.Stats().Syncs }
}

// benchAppends runs b.N appends of one size-byte entry over the
// appenders, one goroutine per shard (raft appends to a shard from one
// goroutine).
func benchAppends(b *testing.B, size int, appenders []func([]*raft.Log) error, syncs func() uint64) {
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i)
	}
	cpu, synced, start := cpuTime(), syncs(), time.Now()
	b.ResetTimer()
	var wg sync.WaitGroup
	for id, appendLogs := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := uint64((b.N + len(appenders) - 1 - id) / len(appenders))
			for i := uint64(1); i <= n; i++ {
				log := &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()}
				if err := appendLogs([]*raft.Log{log}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(n/time.Since(start).Seconds(), "appends/s")
	b.ReportMetric(float64(syncs()-synced)/n, "syncs/append")
	b.ReportMetric(float64(cpuTime()-cpu)/n, "cpu-ns/append")
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// countingWALFS counts the syncs raft-wal issues on its segment files.
type countingWALFS struct {
	types.VFS
	syncs *atomic.Uint64
}

func (c *countingWALFS) Create(dir, name string, size uint64) (types.WritableFile, error) {
	f, err := c.VFS.Create(dir, name, size)
	if err != nil {
		return nil, err
	}
	return countingWALFile{WritableFile: f, syncs: c.syncs}, nil
}

func (c *countingWALFS) OpenWriter(dir, name string) (types.WritableFile, error) {
	f, err := c.VFS.OpenWriter(dir, name)
	if err != nil {
		return nil, err
	}
	return countingWALFile{WritableFile: f, syncs: c.syncs}, nil
}

type countingWALFile struct {
	types.WritableFile
	syncs *atomic.Uint64
}

func (f countingWALFile) Sync() error {
	f.syncs.Add(1)
	return f.WritableFile.Sync()
}

package raft

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// syncedLogStore is an in-memory LogStore that also appends every
// StoreLogs batch to a file and fdatasyncs it, so a benchmark pays a real
// disk flush per write the way a durable log store does.
type syncedLogStore struct {
	*InmemStore
	mu     sync.Mutex
	file   *os.File
	writes int
}

func newSyncedLogStore(tb testing.TB) *syncedLogStore {
	f, err := os.Create(filepath.Join(tb.TempDir(), "log"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return &syncedLogStore{InmemStore: NewInmemStore(), file: f}
}

func (s *syncedLogStore) StoreLog(l *Log) error { return s.StoreLogs([]*Log{l}) }

func (s *syncedLogStore) StoreLogs(logs []*Log) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range logs {
		if _, err := s.file.Write(l.Data); err != nil {
			return err
		}
	}
	if err := s.file.Sync(); err != nil {
		return err
	}
	s.writes++
	return s.InmemStore.StoreLogs(logs)
}

// BenchmarkReplicatedApply runs 3 voters over NetworkTransport on loopback,
// each with a log store that fsyncs every write, and applies 64-byte
// entries from 32 goroutines per CPU. It reports entries committed per second and
// entries per leader log write (what queues while a write runs shares the next).
func BenchmarkReplicatedApply(b *testing.B) {
	for _, inFlight := range []int{1, 2, 8} {
		b.Run(fmt.Sprintf("MaxRPCsInFlight=%d", inFlight), func(b *testing.B) {
			benchReplicatedApply(b, inFlight)
		})
	}
}

func benchReplicatedApply(b *testing.B, inFlight int) {
	logger := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Error, Output: newLineCounter()})
	var servers []Server
	var transports []*NetworkTransport
	for i := 0; i < 3; i++ {
		trans, err := NewTCPTransportWithConfig("127.0.0.1:0", nil, &NetworkTransportConfig{
			MaxPool: 3, Timeout: 5 * time.Second, MaxRPCsInFlight: inFlight, Logger: logger,
		})
		if err != nil {
			b.Fatal(err)
		}
		transports = append(transports, trans)
		servers = append(servers, Server{Suffrage: Voter, ID: ServerID(fmt.Sprintf("node%d", i)), Address: trans.LocalAddr()})
	}
	var rafts []*Raft
	var stores []*syncedLogStore
	for i, trans := range transports {
		store := newSyncedLogStore(b)
		r, err := NewRaft(testConfig(servers[i].ID, logger), &MockFSM{}, store, NewInmemStore(), NewDiscardSnapshotStore(), trans)
		if err != nil {
			b.Fatal(err)
		}
		if err := r.BootstrapCluster(Configuration{Servers: servers}).Error(); err != nil {
			b.Fatal(err)
		}
		rafts = append(rafts, r)
		stores = append(stores, store)
	}
	defer func() {
		for i, r := range rafts {
			_ = r.Shutdown().Error()
			transports[i].Close()
		}
	}()
	var leader *Raft
	deadline := time.Now().Add(10 * time.Second)
	for leader == nil {
		for _, r := range rafts {
			if r.State() == Leader {
				leader = r
			}
		}
		if time.Now().After(deadline) {
			b.Fatal("no leader")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := leader.Barrier(10 * time.Second).Error(); err != nil {
		b.Fatal(err)
	}
	var leaderStore *syncedLogStore
	for i, r := range rafts {
		if r == leader {
			leaderStore = stores[i]
		}
	}
	leaderStore.mu.Lock()
	startWrites := leaderStore.writes
	leaderStore.mu.Unlock()
	data := make([]byte, 64)
	b.SetParallelism(32) // enough callers to keep entries queued behind each write
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := leader.Apply(data, 0).Error(); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "entries/s")
	leaderStore.mu.Lock()
	writes := leaderStore.writes - startWrites
	leaderStore.mu.Unlock()
	if writes > 0 {
		b.ReportMetric(float64(b.N)/float64(writes), "entries/leader-write")
	}
}

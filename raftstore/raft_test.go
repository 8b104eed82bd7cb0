package raftstore

import (
	"encoding/binary"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// sumFSM adds up the uint64s it applies; its snapshot is the sum.
type sumFSM struct {
	mu       sync.Mutex
	sum, cnt uint64
}

func (f *sumFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sum += binary.BigEndian.Uint64(l.Data)
	f.cnt++
	return nil
}

func (f *sumFSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return sumSnapshot{f.sum, f.cnt}, nil
}

func (f *sumFSM) Restore(r io.ReadCloser) error {
	defer r.Close()
	var b [16]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sum, f.cnt = binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	return nil
}

func (f *sumFSM) state() (sum, cnt uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sum, f.cnt
}

type sumSnapshot struct{ sum, cnt uint64 }

func (s sumSnapshot) Persist(sink raft.SnapshotSink) error {
	b := binary.BigEndian.AppendUint64(binary.BigEndian.AppendUint64(nil, s.sum), s.cnt)
	if _, err := sink.Write(b); err != nil {
		sink.Cancel()
		return err
	}
	return sink.Close()
}

func (sumSnapshot) Release() {}

// raftGroup is a single-voter raft group of shard id on store s.
type raftGroup struct {
	r   *raft.Raft
	fsm *sumFSM
}

func startRaft(t *testing.T, s *Store, id uint32, snapDir string, bootstrap bool) *raftGroup {
	t.Helper()
	l := view(t, s, id)
	snaps, err := raft.NewFileSnapshotStore(snapDir, 2, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	addr, trans := raft.NewInmemTransport(raft.ServerAddress(fmt.Sprint("n", id)))
	conf := raft.DefaultConfig()
	conf.LocalID = raft.ServerID(addr)
	conf.HeartbeatTimeout, conf.ElectionTimeout = 50*time.Millisecond, 50*time.Millisecond
	conf.LeaderLeaseTimeout, conf.CommitTimeout = 50*time.Millisecond, 5*time.Millisecond
	conf.SnapshotThreshold, conf.TrailingLogs = 1<<30, 10 // snapshots only when the test asks
	conf.Logger = hclog.NewNullLogger()
	if bootstrap {
		cfg := raft.Configuration{Servers: []raft.Server{{ID: conf.LocalID, Address: addr}}}
		if err := raft.BootstrapCluster(conf, l, l, snaps, trans, cfg); err != nil {
			t.Fatal(err)
		}
	}
	g := &raftGroup{fsm: &sumFSM{}}
	if g.r, err = raft.NewRaft(conf, g.fsm, l, l, snaps, trans); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for g.r.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatalf("shard %d: no leader", id)
		}
		time.Sleep(5 * time.Millisecond) // polling for the state, with a deadline
	}
	return g
}

func (g *raftGroup) apply(t *testing.T, from, to uint64) {
	t.Helper()
	var futures []raft.ApplyFuture
	for v := from; v <= to; v++ {
		futures = append(futures, g.r.Apply(binary.BigEndian.AppendUint64(nil, v), 5*time.Second))
	}
	for _, f := range futures {
		if err := f.Error(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRaftOnStore: raft groups of three shards on one store apply
// entries, snapshot and truncate their logs, and after a restart recover
// exactly their state from snapshot plus log, and go on.
func TestRaftOnStore(t *testing.T) {
	forKinds(t, func(t *testing.T, kind, dir string) {
		s := open(t, kind, dir)
		const shards = 3
		groups := make([]*raftGroup, shards)
		for id := range groups {
			groups[id] = startRaft(t, s, uint32(id), filepath.Join(dir, fmt.Sprint("snap-", id)), true)
		}
		var wg sync.WaitGroup
		for _, g := range groups {
			wg.Add(1)
			go func() {
				defer wg.Done()
				g.apply(t, 1, 100)
			}()
		}
		wg.Wait()
		for id, g := range groups {
			if err := g.r.Snapshot().Error(); err != nil {
				t.Fatal(err)
			}
			first, _ := view(t, s, uint32(id)).FirstIndex()
			if first < 50 {
				t.Fatalf("shard %d: first index %d after a snapshot at ~100 keeping 10", id, first)
			}
			g.apply(t, 101, 150)
		}
		for _, g := range groups {
			if err := g.r.Shutdown().Error(); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}

		s = open(t, kind, dir)
		defer s.Close()
		want := uint64(150 * 151 / 2)
		for id := range groups {
			g := startRaft(t, s, uint32(id), filepath.Join(dir, fmt.Sprint("snap-", id)), false)
			if err := g.r.Barrier(5 * time.Second).Error(); err != nil {
				t.Fatal(err)
			}
			if sum, _ := g.fsm.state(); sum != want {
				t.Fatalf("shard %d: sum %d after the restart, want %d", id, sum, want)
			}
			g.apply(t, 151, 151)
			if sum, _ := g.fsm.state(); sum != want+151 {
				t.Fatalf("shard %d: sum %d, want %d", id, sum, want+151)
			}
			if err := g.r.Shutdown().Error(); err != nil {
				t.Fatal(err)
			}
		}
	})
}

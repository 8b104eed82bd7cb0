package raftstore

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

func open(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func view(t *testing.T, s *Store, id uint32) *Log {
	t.Helper()
	l, err := s.Shard(id)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func logs(from, to uint64, tag string) []*raft.Log {
	var out []*raft.Log
	for i := from; i <= to; i++ {
		out = append(out, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte(fmt.Sprint(tag, i))})
	}
	return out
}

func extent(t *testing.T, l *Log) (uint64, uint64) {
	t.Helper()
	f, _ := l.FirstIndex()
	la, _ := l.LastIndex()
	return f, la
}

func wantLog(t *testing.T, l *Log, idx uint64, tag string) {
	t.Helper()
	var got raft.Log
	if err := l.GetLog(idx, &got); err != nil {
		t.Fatalf("GetLog(%d): %v", idx, err)
	}
	if got.Index != idx || string(got.Data) != fmt.Sprint(tag, idx) {
		t.Fatalf("GetLog(%d) = index %d data %q", idx, got.Index, got.Data)
	}
}

func wantMissing(t *testing.T, l *Log, idx uint64) {
	t.Helper()
	var got raft.Log
	if err := l.GetLog(idx, &got); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog(%d) = %v, want ErrLogNotFound", idx, err)
	}
}

// TestShardsAreSeparate: two shards' logs and stable keys never mix, and
// both survive a reopen with their extents.
func TestShardsAreSeparate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s := open(t, path)
	a, b := view(t, s, 0), view(t, s, 3)
	if f, l := extent(t, a); f != 0 || l != 0 {
		t.Fatalf("new shard extent %d..%d", f, l)
	}
	if err := a.StoreLogs(logs(1, 100, "a")); err != nil {
		t.Fatal(err)
	}
	if err := b.StoreLogs(logs(1, 50, "b")); err != nil {
		t.Fatal(err)
	}
	if err := b.StoreLog(logs(51, 51, "b")[0]); err != nil {
		t.Fatal(err)
	}
	a.SetUint64([]byte("CurrentTerm"), 7)
	b.Set([]byte("LastVoteCand"), []byte("n2"))
	check := func(a, b *Log) {
		t.Helper()
		if f, l := extent(t, a); f != 1 || l != 100 {
			t.Fatalf("shard 0 extent %d..%d", f, l)
		}
		if f, l := extent(t, b); f != 1 || l != 51 {
			t.Fatalf("shard 3 extent %d..%d", f, l)
		}
		wantLog(t, a, 100, "a")
		wantLog(t, b, 51, "b")
		wantMissing(t, b, 52)
		wantMissing(t, a, 0)
		if v, err := a.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
			t.Fatalf("shard 0 term %d, %v", v, err)
		}
		if _, err := b.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
			t.Fatalf("shard 3 sees shard 0's term: %v", err)
		}
		if v, err := b.Get([]byte("LastVoteCand")); err != nil || string(v) != "n2" {
			t.Fatalf("shard 3 vote %q, %v", v, err)
		}
	}
	check(a, b)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, path)
	defer s.Close()
	check(view(t, s, 0), view(t, s, 3))
}

// TestDeleteRange: raft's two kinds of deletion, a compacted prefix and a
// conflicting suffix, and deleting everything, each surviving a reopen.
func TestDeleteRange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s := open(t, path)
	l := view(t, s, 1)
	if err := l.StoreLogs(logs(1, 1000, "x")); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteRange(1, 600); err != nil { // compaction
		t.Fatal(err)
	}
	if err := l.DeleteRange(901, 1000); err != nil { // conflicting suffix
		t.Fatal(err)
	}
	if err := l.StoreLogs(logs(901, 950, "x")); err != nil { // the leader's entries
		t.Fatal(err)
	}
	reopen := func() {
		t.Helper()
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = open(t, path)
		l = view(t, s, 1)
	}
	reopen()
	if f, la := extent(t, l); f != 601 || la != 950 {
		t.Fatalf("extent %d..%d, want 601..950", f, la)
	}
	wantMissing(t, l, 600)
	wantLog(t, l, 601, "x")
	wantLog(t, l, 950, "x")
	wantMissing(t, l, 951)

	if err := l.DeleteRange(601, 950); err != nil {
		t.Fatal(err)
	}
	reopen()
	if f, la := extent(t, l); f != 0 || la != 0 {
		t.Fatalf("extent after deleting everything %d..%d", f, la)
	}
	// A follower that installs a snapshot starts its log past 1.
	if err := l.StoreLogs(logs(5001, 5003, "y")); err != nil {
		t.Fatal(err)
	}
	reopen()
	defer s.Close()
	if f, la := extent(t, l); f != 5001 || la != 5003 {
		t.Fatalf("extent %d..%d, want 5001..5003", f, la)
	}
}

// TestCrashLeftovers: entries below the persisted first index (a crash
// between moving it and deleting them) are dropped at open, and a first
// index persisted for an append that never committed reads as empty.
func TestCrashLeftovers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s := open(t, path)
	l := view(t, s, 2)
	if err := l.StoreLogs(logs(1, 10, "z")); err != nil {
		t.Fatal(err)
	}
	// As if DeleteRange(1, 4) crashed after moving the first index.
	if err := s.bolt.SetUint64(l.firstKey(), 5); err != nil {
		t.Fatal(err)
	}
	// Shard 4: a first index, and no logs.
	if err := s.bolt.SetUint64(view(t, s, 4).firstKey(), 77); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	l = view(t, s, 2)
	if f, la := extent(t, l); f != 5 || la != 10 {
		t.Fatalf("extent %d..%d, want 5..10", f, la)
	}
	var got raft.Log
	if err := s.bolt.GetLog(l.base|4, &got); err == nil {
		t.Fatal("an entry below the first index survived the open")
	}
	if f, la := extent(t, view(t, s, 4)); f != 0 || la != 0 {
		t.Fatalf("shard 4 extent %d..%d, want empty", f, la)
	}
}

// TestConcurrentAppends: shards appending at once (their commits shared)
// all get their entries, in order.
func TestConcurrentAppends(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "raft.db"))
	defer s.Close()
	var wg sync.WaitGroup
	views := make([]*Log, 8)
	for i := range views {
		views[i] = view(t, s, uint32(i))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := uint64(1); j <= 200; j += 4 {
				if err := views[i].StoreLogs(logs(j, j+3, fmt.Sprint("s", i, "-"))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if st.Appends != 8*50 || st.Entries != 8*200 || st.Commits == 0 || st.Commits > st.Appends {
		t.Fatalf("stats %+v: want 400 appends of 1600 entries in 1..400 commits", st)
	}
	t.Logf("%d appends in %d commits", st.Appends, st.Commits)
	for i, l := range views {
		if f, la := extent(t, l); f != 1 || la != 200 {
			t.Fatalf("shard %d extent %d..%d", i, f, la)
		}
		for j := uint64(1); j <= 200; j++ {
			wantLog(t, l, j, fmt.Sprint("s", i, "-"))
		}
	}
}

func TestClosed(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "raft.db"))
	l := view(t, s, 0)
	s.Close()
	if err := l.StoreLogs(logs(1, 1, "c")); err == nil {
		t.Fatalf("append after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// BenchmarkParallelAppends: 4 shards appending one entry at a time each,
// at once, the shape of a node in several busy raft groups; cpu-ns/op is
// the CPU an append costs (bolt commits, two fdatasyncs each, shared).
func BenchmarkParallelAppends(b *testing.B) {
	s, err := Open(filepath.Join(b.TempDir(), "raft.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	benchAppends(b, func(id int) func([]*raft.Log) error {
		l, err := s.Shard(uint32(id))
		if err != nil {
			b.Fatal(err)
		}
		return l.StoreLogs
	})
}

// BenchmarkParallelAppendsSeparate is the same load on one raft-boltdb
// store per shard (what each shard had before), for comparison.
func BenchmarkParallelAppendsSeparate(b *testing.B) {
	dir := b.TempDir()
	benchAppends(b, func(id int) func([]*raft.Log) error {
		st, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(dir, fmt.Sprint(id, ".db"))})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { st.Close() })
		return st.StoreLogs
	})
}

// benchAppends runs b.N appends over 4 shards, one goroutine per shard
// (raft appends to a shard from one goroutine), and reports CPU per append.
func benchAppends(b *testing.B, store func(id int) func([]*raft.Log) error) {
	const shards = 4
	appenders := make([]func([]*raft.Log) error, shards)
	for id := range appenders {
		appenders[id] = store(id)
	}
	cpu := cpuTime()
	b.ResetTimer()
	var wg sync.WaitGroup
	for id, appendLogs := range appenders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := uint64(1); i <= uint64((b.N+shards-1-id)/shards); i++ {
				if err := appendLogs(logs(i, i, "b")); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestAppendAfterSnapshotInstall: a follower keeps some old entries,
// installs a snapshot, and appends past it. The gap must not hide the new
// entries after a reopen (it did: the search for the last index stopped at
// the gap, and acknowledged entries were lost on restart).
func TestAppendAfterSnapshotInstall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s := open(t, path)
	l := view(t, s, 1)
	if err := l.StoreLogs(logs(1, 100, "x")); err != nil {
		t.Fatal(err)
	}
	if err := l.DeleteRange(1, 60); err != nil { // compaction keeps 61..100
		t.Fatal(err)
	}
	if err := l.StoreLogs(logs(301, 340, "y")); err != nil { // after a snapshot at 300
		t.Fatal(err)
	}
	if f, la := extent(t, l); f != 301 || la != 340 {
		t.Fatalf("extent %d..%d, want 301..340", f, la)
	}
	s.Close()
	s = open(t, path)
	defer s.Close()
	l = view(t, s, 1)
	if f, la := extent(t, l); f != 301 || la != 340 {
		t.Fatalf("extent after reopen %d..%d, want 301..340", f, la)
	}
	wantLog(t, l, 340, "y")
	wantMissing(t, l, 100)
}

func TestNonConsecutiveAppendRefused(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "raft.db"))
	defer s.Close()
	l := view(t, s, 0)
	bad := append(logs(1, 2, "a"), logs(4, 4, "a")...)
	if err := l.StoreLogs(bad); err == nil {
		t.Fatal("appended 1, 2, 4")
	}
}

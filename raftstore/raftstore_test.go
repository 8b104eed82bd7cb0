package raftstore

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
)

// kinds are the store kinds every test of the Store's contract runs on.
var kinds = []string{KindPebble, KindBolt}

// forKinds runs test once per store kind, each in a data dir of its own.
func forKinds(t *testing.T, test func(t *testing.T, kind, dir string)) {
	for _, kind := range kinds {
		t.Run(kind, func(t *testing.T) { test(t, kind, t.TempDir()) })
	}
}

func open(t *testing.T, kind, dir string) *Store {
	t.Helper()
	s, err := OpenDir(dir, kind)
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
	forKinds(t, func(t *testing.T, kind, dir string) {
		s := open(t, kind, dir)
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
		s = open(t, kind, dir)
		defer s.Close()
		check(view(t, s, 0), view(t, s, 3))
	})
}

// TestDeleteRange: raft's two kinds of deletion, a compacted prefix and a
// conflicting suffix, and deleting everything, each surviving a reopen.
func TestDeleteRange(t *testing.T) {
	forKinds(t, func(t *testing.T, kind, dir string) {
		s := open(t, kind, dir)
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
			s = open(t, kind, dir)
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
	})
}

// TestConcurrentAppends: shards appending at once (their commits shared)
// all get their entries, in order.
func TestConcurrentAppends(t *testing.T) {
	forKinds(t, func(t *testing.T, kind, dir string) {
		s := open(t, kind, dir)
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
	})
}

func TestClosed(t *testing.T) {
	forKinds(t, func(t *testing.T, kind, dir string) {
		s := open(t, kind, dir)
		l := view(t, s, 0)
		s.Close()
		if err := l.StoreLogs(logs(1, 1, "c")); err == nil {
			t.Fatalf("append after Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
	})
}

// TestAppendAfterSnapshotInstall: a follower keeps some old entries,
// installs a snapshot, and appends past it. The gap must not hide the new
// entries after a reopen (it did: the search for the last index stopped at
// the gap, and acknowledged entries were lost on restart).
func TestAppendAfterSnapshotInstall(t *testing.T) {
	forKinds(t, func(t *testing.T, kind, dir string) {
		s := open(t, kind, dir)
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
		s = open(t, kind, dir)
		defer s.Close()
		l = view(t, s, 1)
		if f, la := extent(t, l); f != 301 || la != 340 {
			t.Fatalf("extent after reopen %d..%d, want 301..340", f, la)
		}
		wantLog(t, l, 340, "y")
		wantMissing(t, l, 100)
	})
}

func TestNonConsecutiveAppendRefused(t *testing.T) {
	forKinds(t, func(t *testing.T, kind, dir string) {
		s := open(t, kind, dir)
		defer s.Close()
		l := view(t, s, 0)
		bad := append(logs(1, 2, "a"), logs(4, 4, "a")...)
		if err := l.StoreLogs(bad); err == nil {
			t.Fatal("appended 1, 2, 4")
		}
	})
}

// TestEveryAppendIsSynced: an append (and a stable write) returns only
// after a sync that covers it, so with nothing else running each sees a
// sync of its own.
func TestEveryAppendIsSynced(t *testing.T) {
	forKinds(t, func(t *testing.T, kind, dir string) {
		s := open(t, kind, dir)
		defer s.Close()
		l := view(t, s, 0)
		for i := uint64(1); i <= 20; i++ {
			before := s.Stats()
			if err := l.StoreLogs(logs(i, i, "x")); err != nil {
				t.Fatal(err)
			}
			after := s.Stats()
			if after.Syncs <= before.Syncs || after.Commits <= before.Commits {
				t.Fatalf("append %d returned after syncs %d → %d, commits %d → %d", i,
					before.Syncs, after.Syncs, before.Commits, after.Commits)
			}
			if after.Appends != before.Appends+1 || after.Entries != before.Entries+1 {
				t.Fatalf("append %d counted as %+v → %+v", i, before, after)
			}
		}
		// A term or vote is synced too.
		before := s.Stats().Syncs
		if err := l.SetUint64([]byte("CurrentTerm"), 3); err != nil {
			t.Fatal(err)
		}
		if after := s.Stats().Syncs; after <= before {
			t.Fatalf("SetUint64 returned after syncs %d → %d", before, after)
		}
	})
}

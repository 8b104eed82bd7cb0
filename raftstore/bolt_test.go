package raftstore

import (
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

func openBoltFile(t *testing.T, path string) *Store {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// boltView is shard id's view of a bolt Store, with its internals.
func boltView(t *testing.T, s *Store, id uint32) *boltLog {
	t.Helper()
	return view(t, s, id).logView.(*boltLog)
}

// TestCrashLeftovers: entries below the persisted first index (a crash
// between moving it and deleting them) are dropped at open, and a first
// index persisted for an append that never committed reads as empty.
func TestCrashLeftovers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	s := openBoltFile(t, path)
	l := boltView(t, s, 2)
	if err := l.StoreLogs(logs(1, 10, "z")); err != nil {
		t.Fatal(err)
	}
	// As if DeleteRange(1, 4) crashed after moving the first index.
	if err := s.b.(*boltStore).bolt.SetUint64(l.firstKey(), 5); err != nil {
		t.Fatal(err)
	}
	// Shard 4: a first index, and no logs.
	if err := s.b.(*boltStore).bolt.SetUint64(boltView(t, s, 4).firstKey(), 77); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openBoltFile(t, path)
	defer s.Close()
	l = boltView(t, s, 2)
	if f, la := extent(t, &Log{l}); f != 5 || la != 10 {
		t.Fatalf("extent %d..%d, want 5..10", f, la)
	}
	var got raft.Log
	if err := s.b.(*boltStore).bolt.GetLog(l.base|4, &got); err == nil {
		t.Fatal("an entry below the first index survived the open")
	}
	if f, la := extent(t, view(t, s, 4)); f != 0 || la != 0 {
		t.Fatalf("shard 4 extent %d..%d, want empty", f, la)
	}
}

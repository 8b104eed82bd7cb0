package raftstore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

// boltLayout writes a data dir in the bolt layout: shard 0 with a
// compacted log (11..100), a term and crash leftovers below its first
// index; shard 3 with entries 1..5 carrying every raft.Log field and a
// vote; shard 5 with a term and no log.
func boltLayout(t *testing.T, dir string) {
	t.Helper()
	s := openBoltFile(t, filepath.Join(dir, BoltFile))
	a, b, c := view(t, s, 0), view(t, s, 3), view(t, s, 5)
	if err := a.StoreLogs(logs(1, 100, "a")); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteRange(1, 10); err != nil {
		t.Fatal(err)
	}
	var full []*raft.Log
	for i := uint64(1); i <= 5; i++ {
		full = append(full, &raft.Log{Index: i, Term: 3, Type: raft.LogConfiguration, Data: []byte("b" + string(rune('0'+i))),
			Extensions: []byte("ext"), AppendedAt: time.Unix(1700000000, int64(i))})
	}
	if err := b.StoreLogs(full); err != nil {
		t.Fatal(err)
	}
	mustSet(t, a.SetUint64([]byte("CurrentTerm"), 7))
	mustSet(t, b.Set([]byte("LastVoteCand"), []byte("n2")))
	mustSet(t, c.SetUint64([]byte("CurrentTerm"), 9))
	// A crash between moving shard 0's first index and deleting below it.
	bs := s.b.(*boltStore)
	if err := bs.bolt.StoreLogs([]*raft.Log{{Index: boltView(t, s, 0).base | 8, Data: []byte("leftover")}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func mustSet(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// checkMigrated checks that s serves what boltLayout wrote.
func checkMigrated(t *testing.T, s *Store) {
	t.Helper()
	a, b, c := view(t, s, 0), view(t, s, 3), view(t, s, 5)
	if f, l := extent(t, a); f != 11 || l != 100 {
		t.Fatalf("shard 0 extent %d..%d, want 11..100", f, l)
	}
	wantMissing(t, a, 8) // the leftover stays behind
	for i := uint64(11); i <= 100; i++ {
		wantLog(t, a, i, "a")
	}
	if f, l := extent(t, b); f != 1 || l != 5 {
		t.Fatalf("shard 3 extent %d..%d, want 1..5", f, l)
	}
	var got raft.Log
	if err := b.GetLog(4, &got); err != nil {
		t.Fatal(err)
	}
	if got.Index != 4 || got.Term != 3 || got.Type != raft.LogConfiguration || string(got.Data) != "b4" ||
		string(got.Extensions) != "ext" || !got.AppendedAt.Equal(time.Unix(1700000000, 4)) {
		t.Fatalf("shard 3 entry 4 = %+v", got)
	}
	if f, l := extent(t, c); f != 0 || l != 0 {
		t.Fatalf("shard 5 extent %d..%d, want empty", f, l)
	}
	if v, err := a.GetUint64([]byte("CurrentTerm")); err != nil || v != 7 {
		t.Fatalf("shard 0 term %d, %v", v, err)
	}
	if v, err := b.Get([]byte("LastVoteCand")); err != nil || string(v) != "n2" {
		t.Fatalf("shard 3 vote %q, %v", v, err)
	}
	if v, err := c.GetUint64([]byte("CurrentTerm")); err != nil || v != 9 {
		t.Fatalf("shard 5 term %d, %v", v, err)
	}
	if _, err := b.GetUint64([]byte("CurrentTerm")); err == nil || err.Error() != "not found" {
		t.Fatalf("shard 3 term: %v, want not found", err)
	}
}

func exists(t *testing.T, path string) bool {
	t.Helper()
	_, err := os.Stat(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return err == nil
}

// TestMigrateFromBolt: a data dir in the bolt layout opens as a pebble
// store with every shard's log and stable keys, raft.db is retired, and
// the next start neither migrates again nor loses what was appended since.
func TestMigrateFromBolt(t *testing.T) {
	dir := t.TempDir()
	boltLayout(t, dir)
	s := openPebbleDir(t, dir)
	checkMigrated(t, s)
	if exists(t, filepath.Join(dir, BoltFile)) || !exists(t, filepath.Join(dir, BoltFile+".migrated")) {
		t.Fatal("raft.db was not renamed to raft.db.migrated")
	}
	if err := view(t, s, 0).StoreLogs(logs(101, 101, "a")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openPebbleDir(t, dir)
	defer s.Close()
	if f, l := extent(t, view(t, s, 0)); f != 11 || l != 101 {
		t.Fatalf("shard 0 extent after a restart %d..%d, want 11..101", f, l)
	}
}

// TestMigrationInterrupted: a copy that a crash cut short (marked started,
// raft.db still there) is discarded and done again.
func TestMigrationInterrupted(t *testing.T) {
	dir := t.TempDir()
	boltLayout(t, dir)
	ps, err := openPebble(filepath.Join(dir, PebbleDir), vfs.Default, newPebbleLogger())
	if err != nil {
		t.Fatal(err)
	}
	mustSet(t, ps.db.Set(migrationKey, migrationStarted, pebble.Sync))
	mustSet(t, ps.db.Set(logKey(0, 5), appendEntry(nil, &raft.Log{Data: []byte("half-copied")}), pebble.Sync))
	mustSet(t, ps.db.Set(stableKey(7, []byte("CurrentTerm")), []byte("12345678"), pebble.Sync))
	mustSet(t, ps.close())

	s := openPebbleDir(t, dir)
	defer s.Close()
	checkMigrated(t, s)
	if f, l := extent(t, view(t, s, 0)); f != 11 {
		t.Fatalf("shard 0 extent %d..%d: the half copy survived", f, l)
	}
	if _, err := view(t, s, 7).Get([]byte("CurrentTerm")); err == nil {
		t.Fatal("a stable key of the half copy survived")
	}
}

// TestMigrationDoneNotRenamed: a crash after the copy was marked done but
// before raft.db was renamed: the next start only renames, and keeps what
// the pebble store holds rather than copying raft.db over it.
func TestMigrationDoneNotRenamed(t *testing.T) {
	dir := t.TempDir()
	boltLayout(t, dir)
	s := openPebbleDir(t, dir)
	if err := view(t, s, 0).StoreLogs(logs(101, 101, "a")); err != nil {
		t.Fatal(err)
	}
	mustSet(t, s.Close())
	if err := os.Rename(filepath.Join(dir, BoltFile+".migrated"), filepath.Join(dir, BoltFile)); err != nil {
		t.Fatal(err)
	}
	s = openPebbleDir(t, dir)
	defer s.Close()
	if f, l := extent(t, view(t, s, 0)); f != 11 || l != 101 {
		t.Fatalf("shard 0 extent %d..%d, want 11..101", f, l)
	}
	if exists(t, filepath.Join(dir, BoltFile)) {
		t.Fatal("raft.db not renamed")
	}
}

// TestRefuseTwoStores: raft.db and a pebble store that both hold raft
// state (not from a migration): neither is picked, raft.db stays as it is.
func TestRefuseTwoStores(t *testing.T) {
	dir := t.TempDir()
	s := openPebbleDir(t, dir)
	mustSet(t, view(t, s, 0).StoreLogs(logs(1, 3, "p")))
	mustSet(t, s.Close())
	boltLayout(t, dir)
	before, err := os.ReadFile(filepath.Join(dir, BoltFile))
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenDir(dir, KindPebble)
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, BoltFile)) {
		t.Fatalf("OpenDir = %v, want a refusal naming raft.db", err)
	}
	after, err := os.ReadFile(filepath.Join(dir, BoltFile))
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("raft.db changed by the refused open (%v)", err)
	}
}

// TestBoltRefusedOverPebble: --log-store bolt on a data dir whose pebble
// store holds data would start the node from raft.db without it; it is
// refused with the flag to use. An empty pebble dir is no obstacle.
func TestBoltRefusedOverPebble(t *testing.T) {
	dir := t.TempDir()
	s := openPebbleDir(t, dir)
	mustSet(t, s.Close())
	s = open(t, KindBolt, dir) // the pebble store is empty
	mustSet(t, view(t, s, 0).StoreLogs(logs(1, 2, "b")))
	mustSet(t, s.Close())

	dir = t.TempDir()
	boltLayout(t, dir)
	s = openPebbleDir(t, dir) // migrates
	mustSet(t, s.Close())
	_, err := OpenDir(dir, KindBolt)
	if err == nil || !strings.Contains(err.Error(), "--log-store pebble") {
		t.Fatalf("OpenDir(bolt) = %v, want a refusal naming --log-store pebble", err)
	}
	if exists(t, filepath.Join(dir, BoltFile)) {
		t.Fatal("the refused bolt open created raft.db")
	}
}

func TestOpenDirKinds(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenDir(dir, "rocks"); err == nil {
		t.Fatal("opened an unknown kind")
	}
	s, err := OpenDir(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Kind() != KindDefault || KindDefault != KindPebble || !exists(t, filepath.Join(dir, PebbleDir)) {
		t.Fatalf("the default kind opened %q", s.Kind())
	}
}

package raftstore

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func openPebbleDir(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := OpenDir(dir, KindPebble)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newestWAL is the path of the newest WAL file of the pebble store in
// dataDir.
func newestWAL(t *testing.T, dataDir string) string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dataDir, PebbleDir, "*.log"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no WAL in %s: %v", dataDir, err)
	}
	sort.Strings(names) // numbered with leading zeros
	return names[len(names)-1]
}

func fileSize(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// copyDir copies the files of src into dst, as a crash would leave them:
// what the running store wrote, without its closing.
func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		to := filepath.Join(dst, rel)
		if fi.IsDir() {
			return os.MkdirAll(to, 0o755)
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(to)
		if err != nil {
			return err
		}
		_, err = io.Copy(out, in)
		return errors.Join(err, out.Close())
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTornWALTail: a crash in the middle of writing an append's WAL record
// (the record cut short, or its bytes garbled) loses that append and
// nothing before it. The store opens, the earlier entries of every shard
// are intact, the torn one is not visible, and raft can go on appending
// over it.
func TestTornWALTail(t *testing.T) {
	damages := map[string]func(t *testing.T, wal string, recStart, recEnd int64){
		"cut mid-record": func(t *testing.T, wal string, recStart, recEnd int64) {
			if err := os.Truncate(wal, recStart+(recEnd-recStart)/2); err != nil {
				t.Fatal(err)
			}
		},
		"last record garbled": func(t *testing.T, wal string, recStart, recEnd int64) {
			f, err := os.OpenFile(wal, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			garbage := []byte(strings.Repeat("\xa5", int(recEnd-recStart)/2))
			if _, err := f.WriteAt(garbage, recStart+(recEnd-recStart)/4); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, damage := range damages {
		t.Run(name, func(t *testing.T) {
			live := t.TempDir()
			s := openPebbleDir(t, live)
			a, b := view(t, s, 0), view(t, s, 1)
			for i := uint64(1); i <= 20; i++ {
				if err := a.StoreLogs(logs(i, i, "a")); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.StoreLogs(logs(1, 5, "b")); err != nil {
				t.Fatal(err)
			}
			wal := newestWAL(t, live)
			recStart := fileSize(t, wal)
			if err := a.StoreLogs(logs(21, 21, "a")); err != nil { // the append the crash tears
				t.Fatal(err)
			}
			if newestWAL(t, live) != wal {
				t.Fatal("the WAL rotated during the test's appends")
			}
			recEnd := fileSize(t, wal)
			if recEnd <= recStart {
				t.Fatalf("the last append grew the WAL from %d to %d bytes", recStart, recEnd)
			}
			crashed := t.TempDir()
			copyDir(t, live, crashed)
			s.Close()
			damage(t, filepath.Join(crashed, PebbleDir, filepath.Base(wal)), recStart, recEnd)

			s = openPebbleDir(t, crashed)
			a, b = view(t, s, 0), view(t, s, 1)
			if f, l := extent(t, a); f != 1 || l != 20 {
				t.Fatalf("shard 0 extent after the torn append %d..%d, want 1..20", f, l)
			}
			for i := uint64(1); i <= 20; i++ {
				wantLog(t, a, i, "a")
			}
			wantMissing(t, a, 21)
			if f, l := extent(t, b); f != 1 || l != 5 {
				t.Fatalf("shard 1 extent %d..%d, want 1..5", f, l)
			}
			wantLog(t, b, 5, "b")
			// raft appends again where the log ends.
			if err := a.StoreLogs(logs(21, 22, "c")); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s = openPebbleDir(t, crashed)
			defer s.Close()
			a = view(t, s, 0)
			if f, l := extent(t, a); f != 1 || l != 22 {
				t.Fatalf("extent after appending past the tear %d..%d, want 1..22", f, l)
			}
			wantLog(t, a, 20, "a")
			wantLog(t, a, 22, "c")
		})
	}
}

// failingSyncFS fails every WAL sync once failing is set.
type failingSyncFS struct {
	vfs.FS
	failing *atomic.Bool
}

func (f failingSyncFS) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	file, err := f.FS.Create(name, cat)
	if err != nil || !strings.HasSuffix(name, ".log") {
		return file, err
	}
	return failingSyncFile{File: file, failing: f.failing}, nil
}

type failingSyncFile struct {
	vfs.File
	failing *atomic.Bool
}

var errInjectedSync = errors.New("injected fdatasync failure")

func (f failingSyncFile) Sync() error {
	if f.failing.Load() {
		return errInjectedSync
	}
	return f.File.Sync()
}

func (f failingSyncFile) SyncData() error {
	if f.failing.Load() {
		return errInjectedSync
	}
	return f.File.SyncData()
}

// fatalPanic is what the test logger's Fatalf panics with, in place of
// ending the test process.
type fatalPanic string

// TestFailedSyncIsNotAcknowledged: when the WAL's fdatasync fails, the
// append does not return nil (pebble stops: its Fatalf, which ends a real
// node's process), so raft never counts an entry that is not on disk.
func TestFailedSyncIsNotAcknowledged(t *testing.T) {
	var failing atomic.Bool
	logger := newPebbleLogger()
	logger.fatal = func(msg string) { panic(fatalPanic(msg)) }
	s, err := openPebble(t.TempDir(), failingSyncFS{FS: vfs.Default, failing: &failing}, logger)
	if err != nil {
		t.Fatal(err)
	}
	lv, err := s.shard(0)
	if err != nil {
		t.Fatal(err)
	}
	l := &Log{lv}
	if err := l.StoreLogs(logs(1, 1, "ok")); err != nil {
		t.Fatal(err)
	}
	failing.Store(true)
	var appendErr error
	var stopped any
	func() {
		defer func() { stopped = recover() }()
		appendErr = l.StoreLogs(logs(2, 2, "lost"))
	}()
	msg, ok := stopped.(fatalPanic)
	switch {
	case !ok && appendErr == nil:
		t.Fatal("an append whose fdatasync failed returned nil")
	case ok && !strings.Contains(string(msg), errInjectedSync.Error()):
		t.Fatalf("stopped with %q, not the sync failure", msg)
	}
	if _, last := extent(t, l); last != 1 {
		t.Fatalf("last index %d after the failed append, want 1", last)
	}
	// The pipeline is dead after a fatal error; the DB is left unclosed
	// (its files go with the temp dir).
}

// TestTruncationIsOneTombstone: deleting a long compacted prefix writes
// one range tombstone, not one deletion per entry.
func TestTruncationIsOneTombstone(t *testing.T) {
	s := openPebbleDir(t, t.TempDir())
	defer s.Close()
	l := view(t, s, 2)
	for i := uint64(1); i <= 10000; i += 1000 {
		if err := l.StoreLogs(logs(i, i+999, "t")); err != nil {
			t.Fatal(err)
		}
	}
	db := s.b.(*pebbleStore).db
	before := db.Metrics().WAL.BytesIn
	if err := l.DeleteRange(1, 9000); err != nil {
		t.Fatal(err)
	}
	if n := db.Metrics().WAL.BytesIn - before; n > 256 {
		t.Fatalf("deleting 9,000 entries wrote %d WAL bytes, want one tombstone", n)
	}
	if f, la := extent(t, l); f != 9001 || la != 10000 {
		t.Fatalf("extent %d..%d, want 9001..10000", f, la)
	}
	wantMissing(t, l, 9000)
	wantLog(t, l, 9001, "t")
}

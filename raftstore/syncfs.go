package raftstore

import (
	"strings"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// syncCounter counts the syncs pebble issues through it: every one that
// reaches the disk (fsync, fdatasync, a SyncTo that synced the whole file),
// and among them those of WAL files, each of which makes a group of
// commits durable. It counts, so the store can report fsyncs per append
// as measured rather than as assumed.
type syncCounter struct {
	vfs.FS
	all, wal *atomic.Uint64
}

func (c syncCounter) wrap(name string, f vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return f, err
	}
	cf := &countedFile{File: f, all: c.all}
	if strings.HasSuffix(name, ".log") {
		cf.wal = c.wal
	}
	return cf, nil
}

func (c syncCounter) Create(name string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := c.FS.Create(name, cat)
	return c.wrap(name, f, err)
}

func (c syncCounter) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := c.FS.Open(name, opts...)
	return c.wrap(name, f, err)
}

func (c syncCounter) OpenReadWrite(name string, cat vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := c.FS.OpenReadWrite(name, cat, opts...)
	return c.wrap(name, f, err)
}

func (c syncCounter) OpenDir(name string) (vfs.File, error) {
	f, err := c.FS.OpenDir(name)
	return c.wrap(name, f, err)
}

func (c syncCounter) ReuseForWrite(oldname, newname string, cat vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := c.FS.ReuseForWrite(oldname, newname, cat)
	return c.wrap(newname, f, err)
}

// Unwrap gives pebble the file system underneath, for the checks it makes
// on the real one (disk health, free space).
func (c syncCounter) Unwrap() vfs.FS { return c.FS }

type countedFile struct {
	vfs.File
	all, wal *atomic.Uint64 // wal is nil for files that are not WALs
}

func (f *countedFile) count() {
	f.all.Add(1)
	if f.wal != nil {
		f.wal.Add(1)
	}
}

func (f *countedFile) Sync() error {
	f.count()
	return f.File.Sync()
}

func (f *countedFile) SyncData() error {
	f.count()
	return f.File.SyncData()
}

func (f *countedFile) SyncTo(length int64) (bool, error) {
	full, err := f.File.SyncTo(length)
	if full {
		f.count()
	}
	return full, err
}

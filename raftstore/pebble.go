package raftstore

// The pebble log store: one pebble database holds every shard's log and
// stable keys. Each append is one batch committed with Sync; pebble's
// commit pipeline writes the batches of concurrent appends to its WAL
// together and covers them with one fdatasync, so no commit loop of our
// own is needed. A torn WAL tail (a crash mid-write) fails its record's
// CRC and is dropped by pebble's recovery on open.
//
// Keys: 'l' | shard (4 bytes, big-endian) | index (8 bytes, big-endian)
// for log entries, so a shard's log is one ordered key range whose first
// and last keys are its extent; 's' | shard | key for stable keys; 'm' |
// name for the store's own markers (see migrate.go).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/hashicorp/raft"
)

const (
	logPrefix    = 'l'
	stablePrefix = 's'
	markerPrefix = 'm'
)

// pebbleOptions are sized for a raft log of a few dozen shards of small
// entries: entries are written once, read back rarely (raft's log cache
// serves replication) and deleted in ranges after snapshots, so a small
// memtable and block cache do, and one compaction at a time is plenty.
func pebbleOptions(fs vfs.FS, logger pebble.Logger) *pebble.Options {
	return &pebble.Options{
		FS:                          fs,
		Logger:                      logger,
		FormatMajorVersion:          pebble.FormatNewest,
		MemTableSize:                8 << 20,
		MemTableStopWritesThreshold: 4,
		L0CompactionThreshold:       4,
		CompactionConcurrencyRange:  func() (int, int) { return 1, 1 },
		MaxOpenFiles:                256,
	}
}

const pebbleCacheBytes = 8 << 20

// pebbleStore is the pebble backend of a Store.
type pebbleStore struct {
	db *pebble.DB

	closeMu sync.RWMutex // every operation holds it shared, so close waits for them
	closed  bool

	syncs, walSyncs  atomic.Uint64 // counted by the file system wrapper
	appends, entries atomic.Uint64
}

// openPebble opens (or creates) the pebble store in dir on fs (vfs.Default
// but in tests).
func openPebble(dir string, fs vfs.FS, logger pebble.Logger) (*pebbleStore, error) {
	s := &pebbleStore{}
	opts := pebbleOptions(syncCounter{FS: fs, all: &s.syncs, wal: &s.walSyncs}, logger)
	cache := pebble.NewCache(pebbleCacheBytes)
	defer cache.Unref() // the DB holds its own reference
	opts.Cache = cache
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("raftstore: open pebble store %s: %w", dir, err)
	}
	s.db = db
	return s, nil
}

func (s *pebbleStore) stats() Stats {
	return Stats{Commits: s.walSyncs.Load(), Appends: s.appends.Load(), Entries: s.entries.Load(),
		Syncs: s.syncs.Load()}
}

// use runs f on the open database, or fails with ErrClosed.
func (s *pebbleStore) use(f func(db *pebble.DB) error) error {
	s.closeMu.RLock()
	defer s.closeMu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return f(s.db)
}

func (s *pebbleStore) close() error {
	s.closeMu.Lock()
	defer s.closeMu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.db.Close()
}

func logKey(shard uint32, idx uint64) []byte {
	k := make([]byte, 13)
	k[0] = logPrefix
	binary.BigEndian.PutUint32(k[1:], shard)
	binary.BigEndian.PutUint64(k[5:], idx)
	return k
}

// shardLogBounds is the key range [lo, hi) of shard's log entries.
func shardLogBounds(shard uint32) (lo, hi []byte) {
	lo = []byte{logPrefix, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(lo[1:], shard)
	hi = []byte{logPrefix, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(hi[1:], shard+1)
	if shard == ^uint32(0) {
		hi = []byte{logPrefix + 1}
	}
	return lo, hi
}

func stableKey(shard uint32, k []byte) []byte {
	out := make([]byte, 5, 5+len(k))
	out[0] = stablePrefix
	binary.BigEndian.PutUint32(out[1:], shard)
	return append(out, k...)
}

// get reads key's value (a copy), or nil, false when it is missing.
func get(db *pebble.DB, key []byte) ([]byte, bool, error) {
	v, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	out := append([]byte(nil), v...)
	return out, true, closer.Close()
}

// pebbleLog is one shard's view of a pebbleStore.
type pebbleLog struct {
	s     *pebbleStore
	shard uint32

	wmu         sync.Mutex // serializes writes: raft appends and compacts from different goroutines
	buf         []byte     // encoding scratch, under wmu
	mu          sync.Mutex // first and last, for readers
	first, last uint64     // 0, 0 when empty
}

// shard returns shard id's view, its extent read from the first and last
// keys of its range.
func (s *pebbleStore) shard(id uint32) (logView, error) {
	l := &pebbleLog{s: s, shard: id}
	err := s.use(func(db *pebble.DB) error {
		lo, hi := shardLogBounds(id)
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
		if err != nil {
			return err
		}
		if it.First() {
			l.first = binary.BigEndian.Uint64(it.Key()[5:])
			it.Last()
			l.last = binary.BigEndian.Uint64(it.Key()[5:])
		}
		return errors.Join(it.Error(), it.Close())
	})
	if err != nil {
		return nil, fmt.Errorf("raftstore: shard %d: %w", id, err)
	}
	return l, nil
}

// FirstIndex implements raft.LogStore.
func (l *pebbleLog) FirstIndex() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first, nil
}

// LastIndex implements raft.LogStore.
func (l *pebbleLog) LastIndex() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last, nil
}

// GetLog implements raft.LogStore.
func (l *pebbleLog) GetLog(idx uint64, log *raft.Log) error {
	return l.s.use(func(db *pebble.DB) error {
		v, closer, err := db.Get(logKey(l.shard, idx))
		if errors.Is(err, pebble.ErrNotFound) {
			return raft.ErrLogNotFound
		}
		if err != nil {
			return err
		}
		defer closer.Close()
		if err := decodeEntry(v, log); err != nil {
			return fmt.Errorf("raftstore: shard %d index %d: %w", l.shard, idx, err)
		}
		log.Index = idx
		return nil
	})
}

// StoreLog implements raft.LogStore.
func (l *pebbleLog) StoreLog(log *raft.Log) error { return l.StoreLogs([]*raft.Log{log}) }

// StoreLogs implements raft.LogStore: durable when it returns nil.
//
// A follower that installed a snapshot appends past a gap after whatever
// older entries it kept; those are all below the snapshot, so the same
// batch deletes them and the log stays one run (as in the bolt store).
//
// pebble treats a failed WAL write or sync as fatal (its logger's Fatalf,
// which ends the process): the commit pipeline cannot go on past it, and
// no append it covers returns nil.
func (l *pebbleLog) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	for i, log := range logs {
		if log.Index == 0 || log.Index == ^uint64(0) || (i > 0 && log.Index != logs[i-1].Index+1) {
			return fmt.Errorf("raftstore: log indexes out of range or not consecutive at %d", log.Index)
		}
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	first, last := l.first, l.last // only writers change them, and they hold wmu
	start, end := logs[0].Index, logs[len(logs)-1].Index
	restart := last == 0 || start > last+1
	err := l.s.use(func(db *pebble.DB) error {
		b := db.NewBatch()
		defer b.Close()
		if restart && last != 0 {
			if err := b.DeleteRange(logKey(l.shard, first), logKey(l.shard, last+1), nil); err != nil {
				return err
			}
		}
		for _, log := range logs {
			l.buf = appendEntry(l.buf[:0], log)
			if err := b.Set(logKey(l.shard, log.Index), l.buf, nil); err != nil {
				return err
			}
		}
		err := b.Commit(pebble.Sync)
		l.s.appends.Add(1)
		l.s.entries.Add(uint64(len(logs)))
		return err
	})
	if err != nil {
		return err
	}
	l.mu.Lock()
	if restart {
		l.first, l.last = start, end
	} else {
		l.first, l.last = min(l.first, start), max(l.last, end)
	}
	l.mu.Unlock()
	return nil
}

// DeleteRange implements raft.LogStore: raft deletes a prefix (after a
// snapshot) or a conflicting suffix (before appending the leader's). One
// range tombstone, synced: the cost does not grow with the entries.
func (l *pebbleLog) DeleteRange(lo, hi uint64) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	first, last := l.first, l.last
	if last == 0 {
		return nil
	}
	from, to := max(lo, first), min(hi, last)
	if from > to {
		return nil
	}
	newFirst, newLast := first, last
	switch {
	case from == first && to == last:
		newFirst, newLast = 0, 0
	case from == first:
		newFirst = to + 1
	case to == last:
		newLast = from - 1
	} // else a hole raft never asks for: the extent stays
	// Readers stop seeing the range before it goes.
	l.setExtent(newFirst, newLast)
	err := l.s.use(func(db *pebble.DB) error {
		return db.DeleteRange(logKey(l.shard, from), logKey(l.shard, to+1), pebble.Sync)
	})
	if err != nil {
		l.setExtent(first, last) // the entries are still there
		return err
	}
	return nil
}

func (l *pebbleLog) setExtent(first, last uint64) {
	l.mu.Lock()
	l.first, l.last = first, last
	l.mu.Unlock()
}

// errNotFound's text is what raft recognizes as a missing stable key.
var errNotFound = errors.New("not found")

// Set implements raft.StableStore: synced, as a vote must be.
func (l *pebbleLog) Set(k, v []byte) error {
	return l.s.use(func(db *pebble.DB) error { return db.Set(stableKey(l.shard, k), v, pebble.Sync) })
}

// Get implements raft.StableStore.
func (l *pebbleLog) Get(k []byte) ([]byte, error) {
	var v []byte
	err := l.s.use(func(db *pebble.DB) error {
		val, ok, err := get(db, stableKey(l.shard, k))
		if err == nil && !ok {
			err = errNotFound
		}
		v = val
		return err
	})
	return v, err
}

// SetUint64 implements raft.StableStore, big-endian as raft-boltdb does,
// so migrated values read the same.
func (l *pebbleLog) SetUint64(k []byte, v uint64) error {
	return l.Set(k, binary.BigEndian.AppendUint64(nil, v))
}

// GetUint64 implements raft.StableStore.
func (l *pebbleLog) GetUint64(k []byte) (uint64, error) {
	v, err := l.Get(k)
	if err != nil {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("raftstore: stable key %q holds %d bytes, not a uint64", k, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

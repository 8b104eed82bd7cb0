package raftstore

// The bolt log store: every shard's log and stable keys in one
// raft-boltdb file, appends of different shards merged into one bolt
// commit (two fdatasyncs) by a commit loop.
//
// Shard s keeps log index i under the store's index s<<48 | i, so each
// shard's log is one contiguous key range and shards never mix. Its first
// index is persisted under a stable key (written before the logs it
// describes, so a crash leaves at worst unreachable entries below it, which
// are deleted on the next open); its last index is found at open by
// searching the contiguous range.

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// maxIndex is the largest raft index a shard can use: indexes share the
// store's 64-bit key space with the shard id above them.
const maxIndex = 1<<48 - 1

// boltStore is the bolt backend of a Store.
type boltStore struct {
	bolt *raftboltdb.BoltStore
	reqs chan *appendReq
	stop chan struct{}
	done chan struct{}

	closeMu sync.RWMutex // senders hold it shared, so Close waits for them
	closed  bool

	commits, appends, entries atomic.Uint64 // see Stats
	writes                    atomic.Uint64 // every bolt write transaction: two fdatasyncs each
}

func (s *boltStore) stats() Stats {
	return Stats{Commits: s.commits.Load(), Appends: s.appends.Load(), Entries: s.entries.Load(),
		Syncs: 2 * s.writes.Load()}
}

type appendReq struct {
	logs []*raft.Log // with store indexes
	done chan error
}

// maxBatchLogs bounds one commit, so a backlog cannot build one huge
// transaction.
const maxBatchLogs = 8192

// openBolt opens (or creates) the bolt store file at path.
func openBolt(path string) (*boltStore, error) {
	b, err := raftboltdb.New(raftboltdb.Options{Path: path})
	if err != nil {
		return nil, err
	}
	s := &boltStore{bolt: b, reqs: make(chan *appendReq, 1024), stop: make(chan struct{}), done: make(chan struct{})}
	go s.commitLoop()
	return s, nil
}

// commitLoop commits appends: each commit takes every append queued while
// the previous one ran.
func (s *boltStore) commitLoop() {
	defer close(s.done)
	var batch []*appendReq
	var logs []*raft.Log
	for {
		batch = batch[:0]
		select {
		case r := <-s.reqs:
			batch = append(batch, r)
		case <-s.stop:
			return
		}
		n := len(batch[0].logs)
	drain:
		for n < maxBatchLogs {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
				n += len(r.logs)
			default:
				break drain
			}
		}
		logs = logs[:0]
		for _, r := range batch {
			logs = append(logs, r.logs...)
		}
		err := s.commit(logs, len(batch))
		if err != nil && len(batch) > 1 {
			// Let each append succeed or fail on its own.
			for _, r := range batch {
				r.done <- s.commit(r.logs, 1)
			}
			continue
		}
		for _, r := range batch {
			r.done <- err
		}
	}
}

// commit stores logs, gathered from that many shard appends, in one bolt
// commit, and counts it.
func (s *boltStore) commit(logs []*raft.Log, appends int) error {
	err := s.bolt.StoreLogs(logs)
	s.writes.Add(1)
	s.commits.Add(1)
	s.appends.Add(uint64(appends))
	s.entries.Add(uint64(len(logs)))
	return err
}

// append stores logs (store indexes) durably, in a commit shared with the
// other shards' concurrent appends.
func (s *boltStore) append(logs []*raft.Log) error {
	r := &appendReq{logs: logs, done: make(chan error, 1)}
	s.closeMu.RLock()
	if s.closed {
		s.closeMu.RUnlock()
		return ErrClosed
	}
	s.reqs <- r // the loop runs until Close, which waits for this send
	s.closeMu.RUnlock()
	return <-r.done
}

// close stops the commit loop and closes the file. Every shard using the
// store must be shut down first.
func (s *boltStore) close() error {
	s.closeMu.Lock()
	if s.closed {
		s.closeMu.Unlock()
		return nil
	}
	s.closed = true
	s.closeMu.Unlock()
	// Appends already queued are committed before the loop sees stop:
	// answer them first.
	for {
		select {
		case r := <-s.reqs:
			r.done <- s.commit(r.logs, 1)
			continue
		default:
		}
		break
	}
	close(s.stop)
	<-s.done
	return s.bolt.Close()
}

// boltLog is one shard's view of a boltStore.
type boltLog struct {
	s    *boltStore
	base uint64 // shard << 48
	pfx  string // stable key prefix

	wmu         sync.Mutex // serializes writes: raft appends and compacts from different goroutines
	mu          sync.Mutex // first and last, for readers
	first, last uint64     // 0, 0 when empty
}

// shard returns shard id's view, finding its log's extent.
func (s *boltStore) shard(id uint32) (logView, error) {
	if id >= 1<<16 {
		return nil, fmt.Errorf("raftstore: shard %d out of range", id)
	}
	l := &boltLog{s: s, base: uint64(id) << 48, pfx: "s" + strconv.FormatUint(uint64(id), 10) + "/"}
	first, err := s.bolt.GetUint64(l.firstKey())
	switch {
	case errors.Is(err, raftboltdb.ErrKeyNotFound):
		first = 0
	case err != nil:
		return nil, err
	}
	if first > 1 {
		// Entries a crash left below the persisted first index.
		if err := s.deleteRange(l.base|1, l.base|(first-1)); err != nil {
			return nil, err
		}
	}
	if first == 0 || !l.has(first) {
		// Empty (a crash may have persisted the first index of an
		// append that never committed).
		return l, nil
	}
	// The log is contiguous from first: find its end.
	lo, step := first, uint64(1)
	for lo+step <= maxIndex && l.has(lo+step) {
		lo += step
		step *= 2
	}
	hi := min(lo+step, maxIndex+1) // lo exists, hi does not (or is past the range)
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if l.has(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	l.first, l.last = first, lo
	return l, nil
}

func (l *boltLog) firstKey() []byte { return []byte(l.pfx + "first-index") }

func (l *boltLog) has(idx uint64) bool {
	var log raft.Log
	return l.s.bolt.GetLog(l.base|idx, &log) == nil
}

// FirstIndex implements raft.LogStore.
func (l *boltLog) FirstIndex() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.first, nil
}

// LastIndex implements raft.LogStore.
func (l *boltLog) LastIndex() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last, nil
}

// GetLog implements raft.LogStore.
func (l *boltLog) GetLog(idx uint64, log *raft.Log) error {
	if idx == 0 || idx > maxIndex {
		return raft.ErrLogNotFound
	}
	if err := l.s.bolt.GetLog(l.base|idx, log); err != nil {
		return err
	}
	log.Index = idx
	return nil
}

// StoreLog implements raft.LogStore.
func (l *boltLog) StoreLog(log *raft.Log) error { return l.StoreLogs([]*raft.Log{log}) }

// StoreLogs implements raft.LogStore: durable when it returns nil.
//
// The log stays one contiguous run from the first index, which is what
// lets Shard find its end. Raft appends contiguously, except on a follower
// that installed a snapshot: its next entries start past the snapshot,
// leaving a gap after whatever older entries it kept. Those older entries
// are all below the snapshot, so the log restarts at the new entries and
// the old run is dropped.
func (l *boltLog) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	for i, log := range logs {
		if log.Index == 0 || log.Index > maxIndex || (i > 0 && log.Index != logs[i-1].Index+1) {
			return fmt.Errorf("raftstore: log indexes out of range or not consecutive at %d", log.Index)
		}
	}
	l.s.closeMu.RLock()
	closed := l.s.closed
	l.s.closeMu.RUnlock()
	if closed {
		return ErrClosed
	}
	l.wmu.Lock()
	defer l.wmu.Unlock()
	l.mu.Lock()
	first, last := l.first, l.last
	l.mu.Unlock()
	start, end := logs[0].Index, logs[len(logs)-1].Index
	restart := last == 0 || start > last+1
	if restart {
		// Persist where the log starts before it does.
		if err := l.s.setUint64(l.firstKey(), start); err != nil {
			return err
		}
	}
	out := make([]*raft.Log, len(logs))
	copies := make([]raft.Log, len(logs))
	for i, log := range logs {
		copies[i] = *log
		copies[i].Index = l.base | log.Index
		out[i] = &copies[i]
	}
	if err := l.s.append(out); err != nil {
		return err
	}
	if restart && last != 0 {
		// Best effort: if this fails, the old run is below the persisted
		// first index and the next open deletes it.
		l.s.deleteRange(l.base|first, l.base|last)
	}
	l.mu.Lock()
	if restart {
		l.first = start
	}
	l.last = max(l.last, end)
	if restart {
		l.last = end
	}
	l.mu.Unlock()
	return nil
}

// DeleteRange implements raft.LogStore: raft deletes a prefix (after a
// snapshot) or a conflicting suffix (before appending the leader's).
func (l *boltLog) DeleteRange(lo, hi uint64) error {
	l.wmu.Lock()
	defer l.wmu.Unlock()
	first, last := l.first, l.last // only writers change them, and they hold wmu
	hi = min(hi, maxIndex)
	if lo > hi || last == 0 {
		return nil
	}
	newFirst, newLast := first, last
	from, to := lo, hi
	switch {
	case lo <= first && hi >= last: // everything
		newFirst, newLast = 0, 0
		from, to = first, last
	case lo <= first: // a prefix
		newFirst = hi + 1
		from = max(lo, 1)
	case hi >= last: // a suffix
		newLast = lo - 1
	} // else a hole raft never asks for: the extent stays
	if newFirst != first {
		// Move the persisted first index before deleting what it passes.
		if err := l.s.setUint64(l.firstKey(), newFirst); err != nil {
			return err
		}
	}
	// Readers stop seeing the range before it goes, and the bolt delete
	// runs without the readers' lock.
	l.setExtent(newFirst, newLast)
	if err := l.s.deleteRange(l.base|from, l.base|to); err != nil {
		l.setExtent(first, last) // the entries are still there
		return err
	}
	return nil
}

func (l *boltLog) setExtent(first, last uint64) {
	l.mu.Lock()
	l.first, l.last = first, last
	l.mu.Unlock()
}

// Set implements raft.StableStore.
func (l *boltLog) Set(k, v []byte) error {
	l.s.writes.Add(1)
	return l.s.bolt.Set(l.key(k), v)
}

// Get implements raft.StableStore. A missing key is an error whose text
// raft recognizes ("not found").
func (l *boltLog) Get(k []byte) ([]byte, error) { return l.s.bolt.Get(l.key(k)) }

// SetUint64 implements raft.StableStore.
func (l *boltLog) SetUint64(k []byte, v uint64) error { return l.s.setUint64(l.key(k), v) }

// GetUint64 implements raft.StableStore.
func (l *boltLog) GetUint64(k []byte) (uint64, error) { return l.s.bolt.GetUint64(l.key(k)) }

func (l *boltLog) key(k []byte) []byte { return append([]byte(l.pfx+"stable/"), k...) }

// setUint64 and deleteRange are bolt write transactions outside the
// commit loop, counted for Stats.Syncs.
func (s *boltStore) setUint64(k []byte, v uint64) error {
	s.writes.Add(1)
	return s.bolt.SetUint64(k, v)
}

func (s *boltStore) deleteRange(lo, hi uint64) error {
	s.writes.Add(1)
	return s.bolt.DeleteRange(lo, hi)
}

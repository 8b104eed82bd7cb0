package shard

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"tally/fsm"
)

// A replica keeps what its last applied entries changed (a changefeed's
// source), as many changes as its retention allows. Every replica applies
// the same entries and so records the same batches under the same
// indexes: a consumer may resume from any replica whose history reaches
// back to its cursor.

// ChangeBatch is what one applied entry changed on a shard.
type ChangeBatch struct {
	Index   uint64       // the entry's raft index
	Time    int64        // the entry's leader time, Unix nanoseconds
	Changes []fsm.Change // one per counter it moved; read only
}

// ChangesPage answers Changes: the batches after the cursor, and the index
// they are complete through (at least the last batch's; above it when
// entries that changed nothing were applied since), the cursor to ask
// from next.
type ChangesPage struct {
	Batches []ChangeBatch
	Through uint64
}

// CursorExpiredError says a replica's history no longer reaches back to
// the cursor: it holds only changes after Floor (it dropped older ones, or
// was restored from a snapshot at Floor). A consumer resynchronizes from a
// Dump.
type CursorExpiredError struct {
	Shard  uint32
	Cursor uint64
	Floor  uint64
}

func (e *CursorExpiredError) Error() string {
	return fmt.Sprintf("shard %d: changes after index %d are no longer held (history starts after %d)", e.Shard, e.Cursor, e.Floor)
}

// ErrChangesOff: this replica keeps no changes (retention 0).
var ErrChangesOff = errors.New("this node keeps no changefeed (--changes-retention 0)")

// changeLog is a replica's recent batches, oldest first: complete for
// every index above floor through last.
type changeLog struct {
	mu      sync.Mutex
	limit   int           // changes held at most; 0: off
	batches []ChangeBatch // batches[head:] are held
	head    int
	held    int    // changes in the held batches
	floor   uint64 // history starts after this index
	last    uint64 // the last applied index recorded
}

// record appends an applied entry's changes (copied: fsm reuses them).
func (l *changeLog) record(index uint64, time int64, changes []fsm.Change) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(changes) > 0 {
		l.batches = append(l.batches, ChangeBatch{Index: index, Time: time, Changes: append([]fsm.Change(nil), changes...)})
		l.held += len(changes)
		// The newest batch stays even if it alone is over the limit (an
		// entry that expired many counters at once): a consumer that is
		// caught up must not be sent to a dump by it.
		for l.held > l.limit && l.head < len(l.batches)-1 {
			b := &l.batches[l.head]
			l.held -= len(b.Changes)
			l.floor = b.Index
			*b = ChangeBatch{}
			l.head++
		}
		if l.head > len(l.batches)/2 {
			l.batches = append(l.batches[:0], l.batches[l.head:]...)
			clear(l.batches[len(l.batches):cap(l.batches)])
			l.head = 0
		}
	}
	l.last = max(l.last, index)
}

// advance notes entries applied that changed nothing (or no command).
func (l *changeLog) advance(index uint64) {
	l.mu.Lock()
	l.last = max(l.last, index)
	l.mu.Unlock()
}

// reset drops the history: the state was replaced by a snapshot at index.
func (l *changeLog) reset(index uint64) {
	l.mu.Lock()
	clear(l.batches)
	l.batches, l.head, l.held = l.batches[:0], 0, 0
	l.floor, l.last = index, index
	l.mu.Unlock()
}

// page returns up to about maxChanges changes after the cursor (at least
// one whole batch, so a page always moves the cursor).
func (l *changeLog) page(shard uint32, after uint64, maxChanges int) (ChangesPage, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.limit == 0 {
		return ChangesPage{}, ErrChangesOff
	}
	if after < l.floor {
		return ChangesPage{}, &CursorExpiredError{Shard: shard, Cursor: after, Floor: l.floor}
	}
	held := l.batches[l.head:]
	// The first batch after the cursor.
	lo, hi := 0, len(held)
	for lo < hi {
		mid := (lo + hi) / 2
		if held[mid].Index <= after {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	p := ChangesPage{Through: max(l.last, after)}
	n := 0
	for i := lo; i < len(held); i++ {
		if n > 0 && n+len(held[i].Changes) > maxChanges {
			p.Through = held[i-1].Index
			break
		}
		p.Batches = append(p.Batches, held[i])
		n += len(held[i].Changes)
	}
	return p, nil
}

// Changes returns what the entries after index after changed, up to about
// maxChanges changes, from this replica's history (which may lag the
// leader's). A *CursorExpiredError says the history no longer reaches
// back that far.
func (s *Shard) Changes(after uint64, maxChanges int) (ChangesPage, error) {
	return s.sm.changes.page(s.id, after, maxChanges)
}

// WaitApplied waits until this replica has applied an entry past index,
// ctx ends or the shard closes; it reports whether it has.
func (s *Shard) WaitApplied(ctx context.Context, index uint64) bool {
	for {
		s.sm.nmu.Lock()
		ch := s.sm.notify
		s.sm.nmu.Unlock()
		if s.sm.applied.Load() > index {
			return true
		}
		select {
		case <-ch:
		case <-s.stop:
			return false
		case <-ctx.Done():
			return false
		}
	}
}

// keepChanges sets how many changes the replica keeps (0: none, and the
// machine records none).
func (s *stateMachine) keepChanges(n int) {
	s.mu.Lock()
	s.changes.mu.Lock()
	s.changes.limit = max(n, 0)
	s.changes.mu.Unlock()
	s.m.TrackChanges(n > 0)
	s.mu.Unlock()
}

// NamedValue is one counter of a Dump.
type NamedValue struct {
	Name  string // the stored name: a counter, or a placement.SubName of one
	Value int64
}

// Dump returns every counter this replica holds with a non-zero value and
// the applied index that state is at: a consistent starting point for a
// changefeed consumer, which continues with Changes after that index.
// The state is captured at once (copy on write) and read outside the lock.
func (s *Shard) Dump() ([]NamedValue, uint64) {
	s.sm.mu.RLock()
	snap := s.sm.m.Snapshot()
	idx := s.sm.applied.Load()
	s.sm.mu.RUnlock()
	defer snap.Release()
	var out []NamedValue
	snap.Each(func(name string, v int64) { out = append(out, NamedValue{Name: name, Value: v}) })
	return out, idx
}

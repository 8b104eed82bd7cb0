package shard

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"tally/fsm"
)

// stateMachine adapts fsm.Machine to raft.BatchingFSM. It adds what raft
// needs and the pure machine must not know: locking between the apply
// goroutine and readers, and the index of the last applied log, which
// linearizable reads wait on.
type stateMachine struct {
	mu      sync.RWMutex
	m       *fsm.Machine
	applied atomic.Uint64
	keys    atomic.Int64 // m.DedupKeys() after the last apply or restore, read without the lock

	// notify is closed and replaced after every applied batch, waking
	// readers waiting for an index.
	nmu    sync.Mutex
	notify chan struct{}

	// onSplit, if set, is called after a batch whose entries ended a split
	// (outside the lock), with the counter and its new factor.
	onSplit func(name string, n int)

	log *slog.Logger // snapshot persists and restores, one line each; nil: none

	// sinceSnap counts the log bytes applied since the last snapshot;
	// past snapBytes (if set), onLogBytes is called after each batch.
	sinceSnap  atomic.Uint64
	snapBytes  uint64
	onLogBytes func()

	// entries counts the command entries applied since the last snapshot;
	// onSnapshot, if set, is told their average size as a snapshot starts.
	entries    atomic.Uint64
	onSnapshot func(avg uint64)

	changes changeLog // what the recent entries changed (changes.go)
}

func newStateMachine(cfg fsm.Config) *stateMachine {
	return &stateMachine{m: fsm.New(cfg), notify: make(chan struct{})}
}

// applyResult is what a raft ApplyFuture's Response() holds for a command.
type applyResult struct {
	results []fsm.Result
	err     error // a corrupt entry: nothing applied
}

func (s *stateMachine) Apply(l *raft.Log) interface{} {
	return s.ApplyBatch([]*raft.Log{l})[0]
}

func (s *stateMachine) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	var splits []fsm.Op
	var bytes uint64
	s.mu.Lock()
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			continue // configuration changes: only the index matters to us
		}
		bytes += uint64(len(l.Data))
		s.entries.Add(1)
		e, err := fsm.DecodeEntry(l.Data)
		if err != nil {
			// Deterministic on every replica: a corrupt entry applies nothing.
			out[i] = applyResult{err: fmt.Errorf("decode entry %d: %w", l.Index, err)}
			continue
		}
		res := s.m.Apply(&e)
		out[i] = applyResult{results: res}
		if s.changes.limit > 0 {
			s.changes.record(l.Index, e.Time, s.m.Changes())
		}
		s.keys.Store(int64(s.m.DedupKeys()))
		for j := range e.Ops {
			if e.Ops[j].Kind == fsm.OpSplitEnd && res[j].Code == fsm.OK {
				splits = append(splits, fsm.SplitEnd(e.Ops[j].Name, int(res[j].Split)))
			}
		}
	}
	// The index moves with the state, under the same lock, so a lookup
	// reads a value and the exact index it reflects (lookupAt).
	last := uint64(0)
	if n := len(logs); n > 0 && logs[n-1].Index > s.applied.Load() {
		last = logs[n-1].Index
		s.changes.advance(last)
		s.applied.Store(last)
	}
	s.mu.Unlock()
	if s.onSplit != nil {
		for _, op := range splits {
			s.onSplit(op.Name, int(op.SplitFactor()))
		}
	}
	if last > 0 {
		s.wake()
	}
	if s.sinceSnap.Add(bytes) >= s.snapBytes && s.snapBytes > 0 && s.onLogBytes != nil {
		s.onLogBytes()
	}
	return out
}

// wake tells waitApplied's callers the applied index moved.
func (s *stateMachine) wake() {
	s.nmu.Lock()
	close(s.notify)
	s.notify = make(chan struct{})
	s.nmu.Unlock()
}

// waitApplied blocks until the applied index reaches idx, or stop closes,
// or the timer fires.
func (s *stateMachine) waitApplied(idx uint64, stop <-chan struct{}, timer <-chan time.Time) bool {
	for {
		s.nmu.Lock()
		ch := s.notify
		s.nmu.Unlock()
		if s.applied.Load() >= idx {
			return true
		}
		select {
		case <-ch:
		case <-stop:
			return s.applied.Load() >= idx
		case <-timer:
			return s.applied.Load() >= idx
		}
	}
}

// now is the clock reads use for expiry: the later of the last applied
// entry's leader time and this node's wall clock, so an expired counter
// reads 0 even on a shard that has had no write since.
func (s *stateMachine) now() int64 {
	return max(s.m.LastTime(), time.Now().UnixNano())
}

// lookup reads counters from the local state.
func (s *stateMachine) lookup(names []string, dst []Lookup) []Lookup {
	dst, _ = s.lookupAt(names, dst)
	return dst
}

// lookupAt is lookup with the applied index the values reflect.
func (s *stateMachine) lookupAt(names []string, dst []Lookup) ([]Lookup, uint64) {
	s.mu.RLock()
	idx := s.applied.Load()
	now := s.now()
	for _, n := range names {
		v, exp := s.m.Get(n, now)
		split, _ := s.m.Split(n)
		dst = append(dst, Lookup{Value: v, ExpiresAt: exp, Split: split})
	}
	s.mu.RUnlock()
	return dst, idx
}

func (s *stateMachine) isMember(name, actor string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m.IsMemberAt(name, actor, s.now())
}

// actorCount is the size of the counter's actor set.
func (s *stateMachine) actorCount(name string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m.ActorCount(name, s.now())
}

// ActorCount returns the number of actors in the counter's actor set (the
// answer to Redis's SCARD), with the same consistency choices as Read.
func (s *Shard) ActorCount(ctx context.Context, name string, linearizable bool) (int, error) {
	if linearizable {
		if err := s.rd.wait(ctx); err != nil {
			return 0, err
		}
	}
	return s.sm.actorCount(name), nil
}

// nextExpiry is when the earliest expiring counter expires (0: none).
// nextExpiry is the earliest time an entry would reclaim something: a
// counter's expiry, or the oldest idempotency key's end (0: neither).
func (s *stateMachine) nextExpiry() int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, k := s.m.NextExpiry(), s.m.NextKeyExpiry()
	if c == 0 || (k != 0 && k < c) {
		return k
	}
	return c
}

// pendingSplits lists the splits begun on this shard and not yet ended.
func (s *stateMachine) pendingSplits() map[string]int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m.PendingSplits()
}

// movedKeys returns the dedup records a pending split of name moves.
func (s *stateMachine) movedKeys(name string) []fsm.Op {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m.MovedKeys(name)
}

func (s *stateMachine) hasKey(key string) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m.HasKey(key)
}

func (s *stateMachine) stats() (counters, keys int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.m.Counters(), s.m.DedupKeys()
}

// Snapshot format: magic, version, applied index, then fsm's own stream.
// The applied index lets a replica restored from a snapshot serve reads
// waiting for indexes the snapshot already covers.
var snapMagic = [4]byte{'T', 'S', 'H', 'D'}

const snapVersion = 1

func (s *stateMachine) Snapshot() (raft.FSMSnapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if n := s.entries.Swap(0); n > 0 && s.onSnapshot != nil {
		s.onSnapshot(s.sinceSnap.Load() / n)
	}
	s.sinceSnap.Store(0)
	return &snapshot{applied: s.applied.Load(), snap: s.m.Snapshot(), log: s.log}, nil
}

func (s *stateMachine) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	br := bufio.NewReader(rc)
	var hdr [13]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		return fmt.Errorf("restore: read header: %w", err)
	}
	if [4]byte(hdr[:4]) != snapMagic || hdr[4] != snapVersion {
		return errors.New("restore: not a tally shard snapshot (bad magic or version)")
	}
	applied := binary.BigEndian.Uint64(hdr[5:])
	start := time.Now()
	s.mu.Lock()
	err := s.m.Restore(br)
	s.keys.Store(int64(s.m.DedupKeys()))
	s.sinceSnap.Store(0)
	s.entries.Store(0)
	if err == nil {
		s.changes.reset(applied)
		// A restore replaces state wholesale, and the index with it, under
		// the lock: a reader never sees the new state at the old index.
		// (The index may go backwards only when raft restores at startup,
		// before anyone reads.)
		s.applied.Store(applied)
	}
	s.mu.Unlock()
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if s.log != nil {
		s.log.Info("snapshot restored", "index", applied, "ms", time.Since(start).Milliseconds())
	}
	s.nmu.Lock()
	close(s.notify)
	s.notify = make(chan struct{})
	s.nmu.Unlock()
	return nil
}

type snapshot struct {
	applied uint64
	snap    *fsm.Snapshot
	log     *slog.Logger
}

func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	bw := bufio.NewWriter(sink)
	var hdr [13]byte
	copy(hdr[:4], snapMagic[:])
	hdr[4] = snapVersion
	binary.BigEndian.PutUint64(hdr[5:], s.applied)
	if _, err := bw.Write(hdr[:]); err != nil {
		sink.Cancel()
		return err
	}
	start := time.Now()
	n, err := s.snap.WriteTo(bw)
	if err != nil {
		sink.Cancel()
		return err
	}
	if err := bw.Flush(); err != nil {
		sink.Cancel()
		return err
	}
	if err := sink.Close(); err != nil {
		return err
	}
	if s.log != nil {
		s.log.Info("snapshot persisted", "index", s.applied, "bytes", n+int64(len(hdr)), "ms", time.Since(start).Milliseconds())
	}
	return nil
}

// Release frees the dedup memory the snapshot shared with the machine.
func (s *snapshot) Release() { s.snap.Release() }

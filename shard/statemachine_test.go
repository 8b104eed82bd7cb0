package shard

import (
	"bytes"
	"io"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/hashicorp/raft"

	"tally/fsm"
)

func cmdLog(idx uint64, ops ...fsm.Op) *raft.Log {
	return &raft.Log{Index: idx, Type: raft.LogCommand, Data: fsm.AppendEntry(nil, &fsm.Entry{Time: int64(idx), Ops: ops})}
}

// memSink is a raft.SnapshotSink in memory.
type memSink struct {
	bytes.Buffer
	cancelled, closed bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }
func (s *memSink) Close() error  { s.closed = true; return nil }

// TestStateMachineApplyBatch: one result per log; configuration logs and
// corrupt entries apply nothing but still advance the applied index.
func TestStateMachineApplyBatch(t *testing.T) {
	sm := newStateMachine(fsm.Config{})
	out := sm.ApplyBatch([]*raft.Log{
		cmdLog(1, add("a", 2), add("b", -1)),
		{Index: 2, Type: raft.LogConfiguration},
		{Index: 3, Type: raft.LogCommand, Data: []byte{9, 9}},
		cmdLog(4, add("a", 3)),
	})
	if len(out) != 4 {
		t.Fatalf("%d responses for 4 logs", len(out))
	}
	if r, ok := out[0].(applyResult); !ok || r.err != nil || !slices.Equal(r.results, []fsm.Result{{Value: 2}, {Value: -1}}) {
		t.Fatalf("log 1: %#v", out[0])
	}
	if out[1] != nil {
		t.Fatalf("configuration log: %#v, want nil", out[1])
	}
	if r, ok := out[2].(applyResult); !ok || r.err == nil || r.results != nil {
		t.Fatalf("corrupt log: %#v, want an error and no results", out[2])
	}
	if r, ok := out[3].(applyResult); !ok || !slices.Equal(r.results, []fsm.Result{{Value: 5}}) {
		t.Fatalf("log 4: %#v", out[3])
	}
	if got := values(sm, "a", "b", "zero"); !slices.Equal(got, []int64{5, -1, 0}) {
		t.Fatalf("values %v", got)
	}
	if sm.applied.Load() != 4 {
		t.Fatalf("applied %d, want 4", sm.applied.Load())
	}
	// Apply (the non-batch path) goes through the same code.
	if r := sm.Apply(cmdLog(5, add("a", 1))).(applyResult); r.results[0].Value != 6 || sm.applied.Load() != 5 {
		t.Fatalf("Apply: %#v, applied %d", r, sm.applied.Load())
	}
	if c, k := sm.stats(); c != 2 || k != 0 {
		t.Fatalf("stats: %d counters, %d keys", c, k)
	}
}

// TestStateMachineWaitApplied: waitApplied returns true once the index is
// applied, waking up on the apply, and false on stop or timeout before.
// synctest makes "the waiter is blocked before the apply" deterministic.
func TestStateMachineWaitApplied(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		sm := newStateMachine(fsm.Config{})
		sm.ApplyBatch([]*raft.Log{cmdLog(3, add("a", 1))})
		never := make(chan time.Time)
		if !sm.waitApplied(2, nil, never) || !sm.waitApplied(3, nil, never) {
			t.Fatal("waitApplied for an index already applied did not return true")
		}

		done := make(chan bool, 1)
		go func() { done <- sm.waitApplied(5, nil, never) }()
		synctest.Wait() // the waiter is blocked
		sm.ApplyBatch([]*raft.Log{cmdLog(4, add("a", 1))})
		synctest.Wait()
		select {
		case ok := <-done:
			t.Fatalf("waitApplied(5) returned %v at index 4", ok)
		default:
		}
		sm.ApplyBatch([]*raft.Log{cmdLog(5, add("a", 1))})
		synctest.Wait()
		select {
		case ok := <-done:
			if !ok {
				t.Fatal("waitApplied(5) returned false after index 5 was applied")
			}
		default:
			t.Fatal("waitApplied(5) did not wake up when index 5 was applied")
		}

		stop := make(chan struct{})
		go func() { done <- sm.waitApplied(9, stop, never) }()
		synctest.Wait()
		close(stop)
		if <-done {
			t.Fatal("waitApplied(9) after stop returned true at index 5")
		}
		if sm.waitApplied(9, nil, time.After(time.Second)) {
			t.Fatal("waitApplied(9) after the timer fired returned true at index 5")
		}
	})
}

// TestStateMachineSnapshotRestore: a snapshot carries the counters, the
// dedup table and the applied index into a fresh state machine; a stream
// that is not a shard snapshot is refused.
func TestStateMachineSnapshotRestore(t *testing.T) {
	sm := newStateMachine(fsm.Config{})
	sm.ApplyBatch([]*raft.Log{cmdLog(7, add("a", 5), addKey("b", 2, "k"))})
	snap, err := sm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	// Writes after the snapshot was taken must not leak into it.
	sm.ApplyBatch([]*raft.Log{cmdLog(8, add("a", 100))})
	var sink memSink
	if err := snap.Persist(&sink); err != nil || !sink.closed || sink.cancelled {
		t.Fatalf("persist: %v (closed %v, cancelled %v)", err, sink.closed, sink.cancelled)
	}
	snap.Release()

	restored := newStateMachine(fsm.Config{})
	restored.ApplyBatch([]*raft.Log{cmdLog(1, add("stale", 1))}) // replaced wholesale
	if err := restored.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if got := values(restored, "a", "b", "stale"); !slices.Equal(got, []int64{5, 2, 0}) {
		t.Fatalf("restored values %v, want [5 2 0]", got)
	}
	if restored.applied.Load() != 7 {
		t.Fatalf("restored applied index %d, want 7", restored.applied.Load())
	}
	// The dedup table came along: a retry of the keyed op adds nothing.
	r := restored.ApplyBatch([]*raft.Log{cmdLog(9, addKey("b", 2, "k"))})[0].(applyResult)
	if r.results[0] != (fsm.Result{Value: 2}) || values(restored, "b")[0] != 2 {
		t.Fatalf("keyed retry after restore: %v", r.results)
	}

	for name, data := range map[string][]byte{
		"empty":     nil,
		"bad magic": append([]byte("XXXX"), sink.Bytes()[4:]...),
		"truncated": sink.Bytes()[:20],
	} {
		if err := newStateMachine(fsm.Config{}).Restore(io.NopCloser(bytes.NewReader(data))); err == nil {
			t.Errorf("restore of %s stream succeeded", name)
		}
	}
}

// values reads counters from sm's local state.
func values(sm *stateMachine, names ...string) []int64 {
	var out []int64
	for _, l := range sm.lookup(names, nil) {
		out = append(out, l.Value)
	}
	return out
}

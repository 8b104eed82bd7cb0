package shard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"tally/fsm"
)

// replay reads every page after cursor and plays the changes onto vals,
// returning the cursor it ends at.
func replay(t *testing.T, page func(after uint64, max int) (ChangesPage, error), after uint64, vals map[string]int64) uint64 {
	t.Helper()
	for {
		p, err := page(after, 3)
		if err != nil {
			t.Fatalf("page after %d: %v", after, err)
		}
		for _, b := range p.Batches {
			if b.Index <= after {
				t.Fatalf("batch %d at or before the cursor %d", b.Index, after)
			}
			for _, c := range b.Changes {
				if vals[c.Name] != c.Old {
					t.Fatalf("batch %d: %q moves from %d, replay has %d", b.Index, c.Name, c.Old, vals[c.Name])
				}
				vals[c.Name] = c.Value
			}
		}
		if p.Through == after {
			return after
		}
		after = p.Through
	}
}

func TestChangeLogPagesEvictsAndExpires(t *testing.T) {
	sm := newStateMachine(fsm.Config{})
	sm.keepChanges(10)
	page := func(after uint64, max int) (ChangesPage, error) { return sm.changes.page(7, after, max) }
	// Index 2 is a configuration entry and 4 moves nothing: the cursor
	// still passes them.
	sm.ApplyBatch([]*raft.Log{cmdLog(1, add("a", 1), add("b", 2)), {Index: 2, Type: raft.LogConfiguration}, cmdLog(3, add("a", 1))})
	sm.ApplyBatch([]*raft.Log{cmdLog(4, add("c", 1), add("c", -1))})
	vals := map[string]int64{}
	if end := replay(t, page, 0, vals); end != 4 || !reflect.DeepEqual(vals, map[string]int64{"a": 2, "b": 2}) {
		t.Fatalf("replay ends at %d with %v, want 4 and a=2 b=2", end, vals)
	}
	p, _ := page(1, 100)
	if len(p.Batches) != 1 || p.Batches[0].Index != 3 || p.Through != 4 {
		t.Fatalf("after 1: %+v, want batch 3 through 4", p)
	}
	// Past the retention the oldest batches go, and a cursor before them
	// is refused with the floor.
	for i := uint64(5); i < 15; i++ {
		sm.ApplyBatch([]*raft.Log{cmdLog(i, add(fmt.Sprint("n", i), 1))})
	}
	var ce *CursorExpiredError
	if _, err := page(0, 100); !errors.As(err, &ce) || ce.Floor == 0 || ce.Shard != 7 {
		t.Fatalf("old cursor: %v, want CursorExpiredError with a floor", err)
	}
	if sm.changes.held > 10 {
		t.Fatalf("holds %d changes, retention 10", sm.changes.held)
	}
	p, err := page(ce.Floor, 100)
	if err != nil || len(p.Batches) == 0 || p.Batches[0].Index <= ce.Floor || p.Through != 14 {
		t.Fatalf("from the floor %d: %+v %v", ce.Floor, p, err)
	}
	// A restore replaces the state: history starts at the snapshot's index.
	snap, _ := sm.Snapshot()
	var sink memSink
	if err := snap.Persist(&sink); err != nil {
		t.Fatal(err)
	}
	other := newStateMachine(fsm.Config{})
	other.keepChanges(10)
	other.ApplyBatch([]*raft.Log{cmdLog(1, add("x", 1))})
	if err := other.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if _, err := other.changes.page(7, 1, 10); !errors.As(err, &ce) || ce.Floor != 14 {
		t.Fatalf("after restore at 14: %v, want floor 14", err)
	}
	if p, err := other.changes.page(7, 14, 10); err != nil || len(p.Batches) != 0 || p.Through != 14 {
		t.Fatalf("after restore, from 14: %+v %v", p, err)
	}
	// An entry with more changes than the retention is kept whole (alone):
	// a consumer that is caught up is not sent to a dump by it.
	big := make([]fsm.Op, 12)
	for i := range big {
		big[i] = add(fmt.Sprint("big", i), 1)
	}
	sm.ApplyBatch([]*raft.Log{cmdLog(15, big...)})
	if p, err := page(14, 100); err != nil || len(p.Batches) != 1 || len(p.Batches[0].Changes) != 12 {
		t.Fatalf("after an entry of 12 changes (retention 10): %+v %v", p, err)
	}
	off := newStateMachine(fsm.Config{})
	if _, err := off.changes.page(7, 0, 10); !errors.Is(err, ErrChangesOff) {
		t.Fatalf("retention 0: %v", err)
	}
}

// Every replica records the same batches, so a consumer can resume on any;
// played from the start they give the leader's values, and Dump with its
// index is where a consumer can start instead.
func TestChangesSameOnEveryReplica(t *testing.T) {
	g := startGroup(t, 3, func(i int, c *Config) { c.ChangeRetention = 100000 })
	lead := g.nodes[g.waitLeader()].sh
	for i := range 60 {
		mustPropose(t, lead, add(fmt.Sprint("c", i%7), int64(i)), add("hot", 1))
	}
	dumped, dumpAt := lead.Dump()
	for i := range 20 {
		mustPropose(t, lead, add(fmt.Sprint("c", i%7), -1), add("hot", 1))
	}
	want := map[string]int64{}
	for i := range 7 {
		want[fmt.Sprint("c", i)] = mustRead(t, lead, true, fmt.Sprint("c", i))[0]
	}
	want["hot"] = 80
	last := lead.sm.applied.Load()
	var first []ChangeBatch
	for i, nd := range g.nodes {
		sh := nd.sh
		waitFor(t, 10*time.Second, "replica applies everything", func() bool { return sh.sm.applied.Load() >= last })
		vals := map[string]int64{}
		replay(t, sh.Changes, 0, vals)
		if !reflect.DeepEqual(vals, want) {
			t.Fatalf("replica %d replays to %v, want %v", i, vals, want)
		}
		all, _ := sh.Changes(0, 1<<30)
		if i == 0 {
			first = all.Batches
		} else if !reflect.DeepEqual(all.Batches, first) {
			t.Fatalf("replica %d records other batches than replica 0", i)
		}
		// From the dump on: the same values.
		vals = map[string]int64{}
		for _, nv := range dumped {
			vals[nv.Name] = nv.Value
		}
		replay(t, sh.Changes, dumpAt, vals)
		for k, v := range vals {
			if v == 0 {
				delete(vals, k)
			}
		}
		if !reflect.DeepEqual(vals, want) {
			t.Fatalf("replica %d: dump at %d then changes give %v, want %v", i, dumpAt, vals, want)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if lead.WaitApplied(ctx, last+100) {
		t.Fatal("WaitApplied returned true for an index not applied")
	}
	done := make(chan bool)
	go func() { done <- lead.WaitApplied(context.Background(), last) }()
	mustPropose(t, lead, add("hot", 1))
	if !<-done {
		t.Fatal("WaitApplied did not see the next entry")
	}
}

package fsm

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"
)

// randomEntries makes a workload that hits every path: few names and keys
// (so keys are retried and reused), deltas near the int64 limits (overflow),
// decrements to zero, and a clock that mostly advances but
// sometimes steps back, with a TTL short enough that keys expire.
func randomEntries(rng *rand.Rand, n int) []Entry {
	deltas := []int64{1, -1, 2, -2, 5, math.MaxInt64, math.MinInt64, math.MaxInt64 / 2, math.MinInt64 / 2}
	entries := make([]Entry, n)
	now := int64(1_700_000_000) * sec
	for i := range entries {
		now += rng.Int64N(300 * int64(time.Millisecond))
		if rng.IntN(10) == 0 {
			now -= rng.Int64N(500 * int64(time.Millisecond))
		}
		ops := make([]Op, rng.IntN(9))
		for j := range ops {
			op := Op{Kind: OpAdd, Name: fmt.Sprint("c", rng.IntN(8)), Delta: deltas[rng.IntN(len(deltas))]}
			if rng.IntN(2) == 0 {
				op.Key = fmt.Sprint("k", rng.IntN(60))
			}
			ops[j] = op
		}
		entries[i] = Entry{Time: now, Ops: ops}
	}
	return entries
}

func TestDeterminism(t *testing.T) {
	cfg := Config{DedupTTL: 2 * time.Second}
	for seed := uint64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			entries := randomEntries(rand.New(rand.NewPCG(seed, 0)), 2000)
			a := New(cfg) // applies entries as built
			b := New(cfg) // applies them as a follower would: decoded from the log
			var c *Machine
			codes := map[Code]int{}
			var buf []byte
			var resB []Result
			for i := range entries {
				if i == len(entries)/2 {
					// c joins mid-way from a's snapshot, as a lagging follower would.
					c = restored(t, cfg, snapBytes(t, a.Snapshot()))
				}
				resA := a.Apply(&entries[i])
				buf = AppendEntry(buf[:0], &entries[i])
				e, err := DecodeEntry(buf)
				if err != nil {
					t.Fatalf("entry %d: %v", i, err)
				}
				resB = b.ApplyTo(resB[:0], &e)
				if !slices.Equal(resA, resB) {
					t.Fatalf("entry %d: a %v, b %v", i, resA, resB)
				}
				if c != nil {
					if resC := c.Apply(&entries[i]); !slices.Equal(resA, resC) {
						t.Fatalf("entry %d: a %v, restored %v", i, resA, resC)
					}
				}
				for _, r := range resA {
					codes[r.Code]++
				}
			}
			for _, code := range []Code{OK, ErrOverflow, ErrKeyReused} {
				if codes[code] == 0 {
					t.Errorf("workload never produced %v; it tests too little", code)
				}
			}
			sa := snapBytes(t, a.Snapshot())
			for name, m := range map[string]*Machine{"decoded": b, "restored": c} {
				if !reflect.DeepEqual(stateOf(a), stateOf(m)) || !bytes.Equal(sa, snapBytes(t, m.Snapshot())) {
					t.Fatalf("%s replica diverged", name)
				}
			}
			if a.DedupKeys() == 0 || a.Counters() == 0 {
				t.Fatalf("degenerate end state: %d keys, %d counters", a.DedupKeys(), a.Counters())
			}
		})
	}
}

// FuzzApply feeds two decoded entries to a Machine and checks the invariants
// every replica relies on: one result per op, identical results on a second
// replica, and a snapshot taken between the entries that restores to a
// machine ending in the same state.
func FuzzApply(f *testing.F) {
	samples := sampleEntries()
	for i := range samples {
		j := (i + 1) % len(samples)
		f.Add(AppendEntry(nil, &samples[i]), AppendEntry(nil, &samples[j]))
	}
	retry := Entry{Time: 5, Ops: []Op{keyed("a", 3, "k"), keyed("a", 3, "k"), keyed("a", 4, "k"), add("a", -3)}}
	later := Entry{Time: 5 + int64(time.Second), Ops: []Op{keyed("a", 3, "k"), add("a", math.MaxInt64)}}
	f.Add(AppendEntry(nil, &retry), AppendEntry(nil, &later))
	f.Fuzz(func(t *testing.T, b1, b2 []byte) {
		e1, err1 := DecodeEntry(b1)
		e2, err2 := DecodeEntry(b2)
		if err1 != nil || err2 != nil {
			return
		}
		cfg := Config{DedupTTL: time.Second}
		m, twin := New(cfg), New(cfg)
		r1 := m.Apply(&e1)
		if len(r1) != len(e1.Ops) {
			t.Fatalf("%d results for %d ops", len(r1), len(e1.Ops))
		}
		if r := twin.Apply(&e1); !reflect.DeepEqual(r, r1) {
			t.Fatalf("replicas disagree: %v vs %v", r, r1)
		}
		restoredM := restored(t, cfg, snapBytes(t, m.Snapshot()))
		r2 := m.Apply(&e2)
		if r := restoredM.Apply(&e2); !reflect.DeepEqual(r, r2) {
			t.Fatalf("restored replica disagrees: %v vs %v", r, r2)
		}
		if !reflect.DeepEqual(stateOf(m), stateOf(restoredM)) {
			t.Fatal("restored replica diverged")
		}
		for _, r := range append(r1, r2...) {
			if r.Code == ErrInvalidOp {
				t.Fatal("decoded op judged invalid")
			}
		}
	})
}

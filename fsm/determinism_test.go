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

// randomEntries makes a workload that hits every path: few names, keys and
// actors (so keys are retried and reused across kinds, and likes repeat),
// deltas near the int64 limits (overflow), decrements to zero, bounds that
// refuse, TTLs short enough that windows expire and restart during the run
// (with actor sets in them), and a clock that mostly advances but sometimes
// steps back, with a dedup TTL short enough that keys expire.
func randomEntries(rng *rand.Rand, n int) []Entry {
	deltas := []int64{1, -1, 2, -2, 5, math.MaxInt64, math.MinInt64, math.MaxInt64 / 2, math.MinInt64 / 2}
	bounds := []int64{-3, 0, 2, 5, 100, math.MaxInt64}
	ttls := []int64{100, 500, 1000, 2000, 5000}
	entries := make([]Entry, n)
	now := int64(1_700_000_000) * sec
	for i := range entries {
		now += rng.Int64N(300 * int64(time.Millisecond))
		if rng.IntN(10) == 0 {
			now -= rng.Int64N(500 * int64(time.Millisecond))
		}
		ops := make([]Op, rng.IntN(9))
		for j := range ops {
			op := Op{Kind: OpAdd, Name: fmt.Sprint("c", rng.IntN(8))}
			// Window counters: mostly adds with a TTL, so they are often
			// absent and start new windows (some liked within a window).
			window := rng.IntN(3) == 0
			if window {
				op.Name = fmt.Sprint("w", rng.IntN(4))
			}
			switch k := rng.IntN(10); {
			case window && k == 9 && op.Name == "w0":
				// A like or unlike in a window (or on a window counter
				// that has expired: a permanent one, until unliked and
				// back to 0, so only on w0).
				op.Kind, op.Actor = OpActorAdd+OpKind(rng.IntN(2)), fmt.Sprint("u", rng.IntN(3))
			case window:
				op.Delta = deltas[rng.IntN(5)]
				op.TTL = ttls[rng.IntN(len(ttls))]
				if rng.IntN(2) == 0 {
					op.HasMax, op.Max = true, bounds[rng.IntN(len(bounds))]
				}
			case k < 3:
				op.Kind, op.Actor = OpActorAdd, fmt.Sprint("u", rng.IntN(12))
			case k < 5:
				op.Kind, op.Actor = OpActorRemove, fmt.Sprint("u", rng.IntN(12))
			default:
				op.Delta = deltas[rng.IntN(len(deltas))]
				if rng.IntN(3) == 0 {
					op.HasMin, op.Min = true, -bounds[rng.IntN(len(bounds))]
				}
				if rng.IntN(3) == 0 {
					op.HasMax, op.Max = true, bounds[rng.IntN(len(bounds))]
				}
				if op.HasMin && op.HasMax && op.Min > op.Max {
					op.Min, op.Max = op.Max, op.Min
				}
				if rng.IntN(3) == 0 {
					op.TTL = ttls[rng.IntN(len(ttls))]
				}
			}
			// Now and then a whole-counter op: a delete, a set (with or
			// without a window) or a new expiry, which take no key.
			switch rng.IntN(60) {
			case 0:
				op = Op{Kind: OpDelete, Name: op.Name}
			case 1:
				op = Op{Kind: OpSet, Name: op.Name, Delta: deltas[rng.IntN(len(deltas))]}
				if rng.IntN(2) == 0 {
					op.TTL = ttls[rng.IntN(len(ttls))]
				}
			case 2:
				op = Op{Kind: OpExpire, Name: op.Name, TTL: ttls[rng.IntN(len(ttls))]}
			default:
				if rng.IntN(2) == 0 {
					op.Key = fmt.Sprint("k", rng.IntN(60))
				}
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
			const n = 3000
			entries := randomEntries(rand.New(rand.NewPCG(seed, 0)), n)
			a := New(cfg) // applies entries as built
			b := New(cfg) // applies them as a follower would: decoded from the log
			// c joins at n/3 from a's snapshot, as a lagging follower would.
			// d joins at n/3 too, from a snapshot taken then but written out
			// only at 2n/3, after a has changed its actor sets many times
			// (copy on write); d then catches up from n/3.
			var c, d *Machine
			var snapD *Snapshot
			codes := map[Code]int{}
			changes := map[bool]int{}
			windows := map[[2]any]bool{} // (name, expiresAt) pairs seen
			maxActors, reclaimed := 0, 0
			var buf []byte
			var resB []Result
			for i := range entries {
				if i == n/3 {
					c = restored(t, cfg, snapBytes(t, a.Snapshot()))
					snapD = a.Snapshot()
				}
				if i == 2*n/3 {
					d = restored(t, cfg, snapBytes(t, snapD))
					for j := n / 3; j < i; j++ {
						d.Apply(&entries[j])
					}
				}
				before := a.Counters()
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
				for _, m := range []*Machine{c, d} {
					if m != nil {
						if res := m.Apply(&entries[i]); !slices.Equal(resA, res) {
							t.Fatalf("entry %d: a %v, restored %v", i, resA, res)
						}
					}
				}
				if a.Counters() < before && len(entries[i].Ops) == 0 {
					reclaimed++
				}
				for j, r := range resA {
					codes[r.Code]++
					if entries[i].Ops[j].Kind != OpAdd && r.Code == OK {
						changes[r.Changed]++
					}
					if r.ExpiresAt != 0 {
						windows[[2]any{entries[i].Ops[j].Name, r.ExpiresAt}] = true
					}
				}
				for _, cs := range stateOf(a).Counters {
					maxActors = max(maxActors, len(cs.Actors))
				}
			}
			for _, code := range []Code{OK, ErrOverflow, ErrKeyReused, ErrOutOfBounds} {
				if codes[code] == 0 {
					t.Errorf("workload never produced %v; it tests too little", code)
				}
			}
			if changes[true] == 0 || changes[false] == 0 || maxActors < 5 {
				t.Errorf("actor churn too low: changes %v, max set %d", changes, maxActors)
			}
			t.Logf("codes %v, changes %v, max set %d, %d windows, %d reclaims", codes, changes, maxActors, len(windows), reclaimed)
			if len(windows) < 100 || reclaimed == 0 {
				t.Errorf("too few expiries: %d windows, %d reclaims by empty entries", len(windows), reclaimed)
			}
			sa := snapBytes(t, a.Snapshot())
			for name, m := range map[string]*Machine{"decoded": b, "restored": c, "restored late": d} {
				if !reflect.DeepEqual(stateOf(a), stateOf(m)) || !bytes.Equal(sa, snapBytes(t, m.Snapshot())) {
					t.Fatalf("%s replica diverged", name)
				}
				if m.NextExpiry() != a.NextExpiry() {
					t.Fatalf("%s replica: NextExpiry %d, want %d", name, m.NextExpiry(), a.NextExpiry())
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
	likes := Entry{Time: 5, Ops: []Op{
		withKey(like("p", "a"), "k"), like("p", "a"), like("p", "b"), unlike("p", "a"), withKey(like("p", "a"), "k"),
		withTTL(atMost("r", 1, 1), 1000), withTTL(atMost("r", 1, 1), 1000), withKey(atLeast("s", -1, 0), "s"),
	}}
	expired := Entry{Time: 5 + int64(time.Second), Ops: []Op{like("r", "a"), withTTL(atMost("r", 1, 1), 1000), unlike("p", "b")}}
	f.Add(AppendEntry(nil, &likes), AppendEntry(nil, &expired))
	f.Add(AppendEntry(nil, &likes), AppendEntry(nil, &Entry{Time: math.MaxInt64, Ops: expired.Ops}))
	splitting := Entry{Time: 5, Ops: []Op{
		keyed("h", 1, "k1"), keyed("h", 1, "k2"), begin("h", 4, 8), keyed("h", 1, "k3"), add("h", 1), atMost("h", 1, 9),
		ImportKey("h/2", "k9", 1, 3), end("h", 4), keyed("h/2", 1, "k9"),
	}}
	f.Add(AppendEntry(nil, &splitting), AppendEntry(nil, &Entry{Time: 6, Ops: []Op{begin("h", 2, 8), end("h", 6), keyed("h", 1, "k2")}}))
	whole := Entry{Time: 5, Ops: []Op{
		like("p", "a"), add("q", 2), withTTL(add("w", 1), 1000), {Kind: OpExpire, Name: "q", TTL: 500},
		{Kind: OpSet, Name: "p", Delta: 9}, {Kind: OpDelete, Name: "w"}, {Kind: OpSet, Name: "z", Delta: 3, TTL: 200},
	}}
	f.Add(AppendEntry(nil, &whole), AppendEntry(nil, &Entry{Time: 5 + int64(time.Second), Ops: []Op{{Kind: OpDelete, Name: "p"}, add("q", 1), {Kind: OpExpire, Name: "z", TTL: 1}}}))
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
		// Reads agree with what the next op would see.
		for _, op := range e2.Ops {
			v, exp := m.Get(op.Name, m.LastTime())
			if v != m.Value(op.Name) || (exp != 0 && exp <= m.LastTime()) {
				t.Fatalf("Get(%q) = %d, %d; Value %d, LastTime %d", op.Name, v, exp, m.Value(op.Name), m.LastTime())
			}
			if op.Actor != "" && m.IsMember(op.Name, op.Actor) != m.IsMemberAt(op.Name, op.Actor, m.LastTime()) {
				t.Fatal("IsMember and IsMemberAt disagree")
			}
		}
	})
}

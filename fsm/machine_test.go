package fsm

import (
	"fmt"
	"maps"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

const sec = int64(time.Second)

func add(name string, delta int64) Op { return Op{Kind: OpAdd, Name: name, Delta: delta} }

func keyed(name string, delta int64, key string) Op {
	return Op{Kind: OpAdd, Name: name, Delta: delta, Key: key}
}

func ok(v int64) Result { return Result{Value: v, Code: OK} }

// counterState is one counter in comparable form.
type counterState struct {
	Value, Expiry int64
	Actors        []string // sorted; nil if none
}

// state is a Machine's logical state in comparable form: what must be equal
// between replicas. Ring layout, sequence numbers, the shape of the expiry
// heap and copy-on-write generations are internal and left out.
type state struct {
	Counters map[string]counterState
	Dedup    []dedupState // oldest first
	LastTime int64
	Splits   map[string]splitState
}

// dedupState is a remembered key in comparable form.
type dedupState struct {
	Rec       dedupRec
	ExpiresAt int64
}

// values returns the counters' values.
func (s state) values() map[string]int64 {
	v := make(map[string]int64, len(s.Counters))
	for name, c := range s.Counters {
		v[name] = c.Value
	}
	return v
}

// stateOf returns m's state, panicking if m breaks an internal invariant.
func stateOf(m *Machine) state {
	held := checkCounters(m.ctrs)
	s := state{Counters: make(map[string]counterState, len(held)), LastTime: m.lastTime, Splits: maps.Clone(m.splits)}
	s.Dedup = checkDedup(m.dedup)
	// The heap is a heap, and each counter with an expiry has its item.
	items := map[expiry]bool{}
	for i := range m.expiries {
		if p := (i - 1) / 2; i > 0 && m.expiries[i].less(&m.expiries[p]) {
			panic(fmt.Sprintf("expiry heap out of order at %d", i))
		}
		items[m.expiries[i]] = true
	}
	for name, c := range held {
		if !c.held() {
			panic(fmt.Sprintf("counter %q held with nothing in it", name))
		}
		if c.expiry != 0 && !items[expiry{at: c.expiry, name: name}] {
			panic(fmt.Sprintf("counter %q expiring at %d has no heap item", name, c.expiry))
		}
		if c.expiry < 0 || (c.expiry != 0 && c.expiry <= m.lastTime && c.expiry != math.MaxInt64) {
			panic(fmt.Sprintf("counter %q expired at %d, LastTime %d, still held", name, c.expiry, m.lastTime))
		}
		cs := counterState{Value: c.value, Expiry: c.expiry}
		if c.actors != nil {
			if c.actors.len() == 0 || (c.actors.short != nil && len(c.actors.short) == 0) || (c.actors.long != nil && len(c.actors.long) == 0) {
				panic(fmt.Sprintf("counter %q has an empty actor set", name))
			}
			for a := range c.actors.long {
				if len(a) <= maxShortActor {
					panic(fmt.Sprintf("counter %q holds short actor %q as a string", name, a))
				}
			}
			cs.Actors = c.actors.sorted()
		}
		s.Counters[name] = cs
	}
	return s
}

func TestApply(t *testing.T) {
	type step struct {
		time int64
		ops  []Op
		want []Result
	}
	const (
		max = math.MaxInt64
		min = math.MinInt64
	)
	tests := []struct {
		name  string
		cfg   Config
		steps []step
		want  map[string]int64 // every counter held afterwards
		keys  int              // DedupKeys afterwards
	}{
		{
			name:  "add positive",
			steps: []step{{1, []Op{add("a", 5), add("a", 2)}, []Result{ok(5), ok(7)}}},
			want:  map[string]int64{"a": 7},
		},
		{
			name:  "add negative",
			steps: []step{{1, []Op{add("a", -5), add("a", -2)}, []Result{ok(-5), ok(-7)}}},
			want:  map[string]int64{"a": -7},
		},
		{
			name: "counters are independent",
			steps: []step{{1, []Op{add("a", 1), add("b", 2), add("a", 3)},
				[]Result{ok(1), ok(2), ok(4)}}},
			want: map[string]int64{"a": 4, "b": 2},
		},
		{
			name: "to zero deletes",
			steps: []step{
				{1, []Op{add("a", 3), add("b", 1)}, []Result{ok(3), ok(1)}},
				{2, []Op{add("a", -3)}, []Result{ok(0)}},
			},
			want: map[string]int64{"b": 1},
		},
		{
			name:  "zero delta on unknown counter creates nothing",
			steps: []step{{1, []Op{add("a", 0)}, []Result{ok(0)}}},
			want:  map[string]int64{},
		},
		{
			name:  "extremes fit",
			steps: []step{{1, []Op{add("a", max), add("b", min), add("b", max)}, []Result{ok(max), ok(min), ok(-1)}}},
			want:  map[string]int64{"a": max, "b": -1},
		},
		{
			name: "overflow up",
			steps: []step{
				{1, []Op{add("a", max-1)}, []Result{ok(max - 1)}},
				{2, []Op{add("a", 2), add("b", 1), add("a", 1)},
					[]Result{{Value: max - 1, Code: ErrOverflow}, ok(1), ok(max)}},
				{3, []Op{add("a", 1)}, []Result{{Value: max, Code: ErrOverflow}}},
			},
			want: map[string]int64{"a": max, "b": 1},
		},
		{
			name: "overflow down",
			steps: []step{
				{1, []Op{add("a", -1)}, []Result{ok(-1)}},
				{2, []Op{add("a", min), add("b", 1), add("a", min+1)},
					[]Result{{Value: -1, Code: ErrOverflow}, ok(1), ok(min)}},
				{3, []Op{add("a", -1)}, []Result{{Value: min, Code: ErrOverflow}}},
			},
			want: map[string]int64{"a": min, "b": 1},
		},
		{
			name: "overflow on unknown counter cannot happen, on max can",
			steps: []step{
				{1, []Op{add("a", max), add("a", max)}, []Result{ok(max), {Value: max, Code: ErrOverflow}}},
			},
			want: map[string]int64{"a": max},
		},
		{
			name: "dedup hit returns first result and does not add",
			steps: []step{
				{1, []Op{keyed("a", 5, "k")}, []Result{ok(5)}},
				{2, []Op{add("a", 1)}, []Result{ok(6)}},
				{3, []Op{keyed("a", 5, "k"), add("a", 1)}, []Result{ok(5), ok(7)}},
			},
			want: map[string]int64{"a": 7},
			keys: 1,
		},
		{
			name: "dedup hit within the same entry",
			steps: []step{
				{1, []Op{keyed("a", 5, "k"), keyed("a", 5, "k"), add("a", 1), keyed("a", 5, "k")},
					[]Result{ok(5), ok(5), ok(6), ok(5)}},
			},
			want: map[string]int64{"a": 6},
			keys: 1,
		},
		{
			name: "dedup hit on a decrement to zero",
			steps: []step{
				{1, []Op{add("a", 2), keyed("a", -2, "k")}, []Result{ok(2), ok(0)}},
				{2, []Op{keyed("a", -2, "k")}, []Result{ok(0)}},
			},
			want: map[string]int64{},
			keys: 1,
		},
		{
			name: "key reused with a different delta",
			steps: []step{
				{1, []Op{keyed("a", 5, "k")}, []Result{ok(5)}},
				{2, []Op{add("a", 1), keyed("a", 6, "k"), keyed("a", -5, "k")},
					[]Result{ok(6), {Value: 6, Code: ErrKeyReused}, {Value: 6, Code: ErrKeyReused}}},
				// The original op still dedups: a reuse is not remembered.
				{3, []Op{keyed("a", 5, "k")}, []Result{ok(5)}},
			},
			want: map[string]int64{"a": 6},
			keys: 1,
		},
		{
			name: "key reused with a different name",
			steps: []step{
				{1, []Op{keyed("a", 5, "k"), add("b", 2)}, []Result{ok(5), ok(2)}},
				// Value is the current value of the op's own counter, b.
				{2, []Op{keyed("b", 5, "k"), keyed("c", 5, "k")},
					[]Result{{Value: 2, Code: ErrKeyReused}, {Value: 0, Code: ErrKeyReused}}},
			},
			want: map[string]int64{"a": 5, "b": 2},
			keys: 1,
		},
		{
			name: "key reused within the same entry",
			steps: []step{
				{1, []Op{keyed("a", 5, "k"), keyed("a", 4, "k"), keyed("a", 5, "k")},
					[]Result{ok(5), {Value: 5, Code: ErrKeyReused}, ok(5)}},
			},
			want: map[string]int64{"a": 5},
			keys: 1,
		},
		{
			name: "overflow result is remembered",
			steps: []step{
				{1, []Op{add("a", max)}, []Result{ok(max)}},
				{2, []Op{keyed("a", 1, "k"), add("a", -10)}, []Result{{Value: max, Code: ErrOverflow}, ok(max - 10)}},
				// The add would fit now, but the retry gets the first answer.
				{3, []Op{keyed("a", 1, "k")}, []Result{{Value: max, Code: ErrOverflow}}},
			},
			want: map[string]int64{"a": max - 10},
			keys: 1,
		},
		{
			name: "distinct keys are independent",
			steps: []step{
				{1, []Op{keyed("a", 1, "k1"), keyed("a", 1, "k2"), keyed("a", 1, "k1")},
					[]Result{ok(1), ok(2), ok(1)}},
			},
			want: map[string]int64{"a": 2},
			keys: 2,
		},
		{
			name: "key expires exactly at TTL, not before",
			cfg:  Config{DedupTTL: 10 * time.Second},
			steps: []step{
				{100 * sec, []Op{keyed("a", 5, "k")}, []Result{ok(5)}},
				{110*sec - 1, []Op{keyed("a", 5, "k")}, []Result{ok(5)}},
				{110 * sec, []Op{keyed("a", 5, "k")}, []Result{ok(10)}}, // forgotten, so applied again
				// ...and remembered afresh from 110s.
				{120*sec - 1, []Op{keyed("a", 5, "k")}, []Result{ok(10)}},
			},
			want: map[string]int64{"a": 10},
			keys: 1,
		},
		{
			name: "expired key can be reused for another op",
			cfg:  Config{DedupTTL: time.Second},
			steps: []step{
				{0, []Op{keyed("a", 5, "k")}, []Result{ok(5)}},
				{sec, []Op{keyed("b", 1, "k")}, []Result{ok(1)}},
			},
			want: map[string]int64{"a": 5, "b": 1},
			keys: 1,
		},
		{
			name: "empty entry expires keys",
			cfg:  Config{DedupTTL: time.Second},
			steps: []step{
				{0, []Op{keyed("a", 5, "k")}, []Result{ok(5)}},
				{sec, nil, []Result{}},
			},
			want: map[string]int64{"a": 5},
			keys: 0,
		},
		{
			name: "default TTL is 10 minutes",
			steps: []step{
				{0, []Op{keyed("a", 1, "k1")}, []Result{ok(1)}},
				{sec, []Op{keyed("a", 1, "k2")}, []Result{ok(2)}},
				{int64(10*time.Minute) - 1, []Op{keyed("a", 1, "k1")}, []Result{ok(1)}},
				{int64(10 * time.Minute), []Op{keyed("a", 1, "k1"), keyed("a", 1, "k2")}, []Result{ok(3), ok(2)}},
			},
			want: map[string]int64{"a": 3},
			keys: 2,
		},
		{
			name: "negative TTL means the default",
			cfg:  Config{DedupTTL: -time.Second},
			steps: []step{
				{0, []Op{keyed("a", 1, "k")}, []Result{ok(1)}},
				{int64(10*time.Minute) - 1, []Op{keyed("a", 1, "k")}, []Result{ok(1)}},
			},
			want: map[string]int64{"a": 1},
			keys: 1,
		},
		{
			name: "configurable TTL",
			cfg:  Config{DedupTTL: 3 * time.Millisecond},
			steps: []step{
				{0, []Op{keyed("a", 1, "k")}, []Result{ok(1)}},
				{2e6, []Op{keyed("a", 1, "k")}, []Result{ok(1)}},
				{3e6, []Op{keyed("a", 1, "k")}, []Result{ok(2)}},
			},
			want: map[string]int64{"a": 2},
			keys: 1,
		},
		{
			name: "expiry near the ends of time does not overflow",
			steps: []step{
				{math.MinInt64, []Op{keyed("a", 1, "k1")}, []Result{ok(1)}},
				{math.MinInt64 + 1, []Op{keyed("a", 1, "k1")}, []Result{ok(1)}},
				{math.MaxInt64 - 1, []Op{keyed("a", 1, "k2"), keyed("a", 1, "k1")}, []Result{ok(2), ok(3)}},
				{math.MaxInt64, []Op{keyed("a", 1, "k2")}, []Result{ok(2)}},
			},
			want: map[string]int64{"a": 3},
			keys: 2,
		},
		{
			name: "invalid ops change nothing and later ops apply",
			steps: []step{
				{1, []Op{add("a", 1)}, []Result{ok(1)}},
				{2, []Op{
					{Kind: 0, Name: "a", Delta: 1, Key: "k1"},
					{Kind: 9, Name: "a", Delta: 1},
					{Kind: OpAdd, Name: "", Delta: 1, Key: "k2"},
					{Kind: OpAdd, Name: strings.Repeat("b", MaxNameLen+1), Delta: 1},
					{Kind: OpAdd, Name: "a", Delta: 1, Key: strings.Repeat("k", MaxKeyLen+1)},
					keyed("a", 1, "k1"),
				}, []Result{{Value: 1, Code: ErrInvalidOp}, {Value: 1, Code: ErrInvalidOp}, {Value: 0, Code: ErrInvalidOp}, {Value: 0, Code: ErrInvalidOp}, {Value: 1, Code: ErrInvalidOp}, ok(2)}},
			},
			want: map[string]int64{"a": 2},
			keys: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(tt.cfg)
			for i, s := range tt.steps {
				got := m.Apply(&Entry{Time: s.time, Ops: s.ops})
				if !reflect.DeepEqual(got, s.want) {
					t.Fatalf("step %d: results\n got %v\nwant %v", i, got, s.want)
				}
			}
			st := stateOf(m)
			if !maps.Equal(st.values(), tt.want) {
				t.Errorf("counters = %v, want %v", st.values(), tt.want)
			}
			for name, v := range tt.want {
				if got := m.Value(name); got != v {
					t.Errorf("Value(%q) = %d, want %d", name, got, v)
				}
			}
			if m.Counters() != len(tt.want) {
				t.Errorf("Counters() = %d, want %d", m.Counters(), len(tt.want))
			}
			if m.DedupKeys() != tt.keys {
				t.Errorf("DedupKeys() = %d, want %d", m.DedupKeys(), tt.keys)
			}
		})
	}
}

func TestValueUnknownIsZero(t *testing.T) {
	m := New(Config{})
	if v := m.Value("nope"); v != 0 {
		t.Fatalf("Value = %d", v)
	}
	m.Apply(&Entry{Ops: []Op{add("a", 1), add("a", -1)}})
	if v, n := m.Value("a"), m.Counters(); v != 0 || n != 0 {
		t.Fatalf("after back to zero: Value = %d, Counters = %d", v, n)
	}
}

func TestLastTime(t *testing.T) {
	m := New(Config{})
	if m.LastTime() != 0 {
		t.Fatalf("fresh LastTime = %d", m.LastTime())
	}
	for _, tc := range []struct{ time, want int64 }{{5, 5}, {9, 9}, {7, 9}, {9, 9}, {12, 12}} {
		m.Apply(&Entry{Time: tc.time})
		if got := m.LastTime(); got != tc.want {
			t.Fatalf("after time %d: LastTime = %d, want %d", tc.time, got, tc.want)
		}
	}
}

// Expiry walks the FIFO in insertion order and stops at the first live
// record, so a key stamped with an earlier time (the leader's clock stepped
// back) waits behind a later one. That is deterministic, and it is what a
// restored replica must reproduce.
func TestExpiryIsFIFO(t *testing.T) {
	m := New(Config{DedupTTL: 10 * time.Second})
	m.Apply(&Entry{Time: 100 * sec, Ops: []Op{keyed("a", 1, "late")}})
	m.Apply(&Entry{Time: 50 * sec, Ops: []Op{keyed("a", 1, "early")}})
	m.Apply(&Entry{Time: 105 * sec})
	if m.DedupKeys() != 2 {
		t.Fatalf("early key expired out of FIFO order: DedupKeys = %d", m.DedupKeys())
	}
	m.Apply(&Entry{Time: 110 * sec})
	if m.DedupKeys() != 0 {
		t.Fatalf("DedupKeys = %d after both are due", m.DedupKeys())
	}
}

func TestDedupTableGrowsAndShrinks(t *testing.T) {
	m := New(Config{DedupTTL: 10 * time.Second})
	const n = 3*chunkRecs + 100
	for i := range n {
		m.Apply(&Entry{Time: sec, Ops: []Op{keyed("a", 1, fmt.Sprint("old", i))}})
	}
	for i := range 10 {
		m.Apply(&Entry{Time: 5 * sec, Ops: []Op{keyed("a", 1, fmt.Sprint("new", i))}})
	}
	big := len(m.dedup.idx.slots)
	if big < n || len(m.dedup.chunks) != 4 {
		t.Fatalf("index of %d, %d chunks, hold %d keys", big, len(m.dedup.chunks), n+10)
	}
	m.Apply(&Entry{Time: 11 * sec}) // expires the old keys only
	if m.DedupKeys() != 10 {
		t.Fatalf("DedupKeys = %d, want 10", m.DedupKeys())
	}
	if len(m.dedup.idx.slots) >= big/8 {
		t.Fatalf("index did not shrink: %d -> %d", big, len(m.dedup.idx.slots))
	}
	if len(m.dedup.chunks) != 1 {
		t.Fatalf("%d chunks kept for 10 keys: the expired one was not freed", len(m.dedup.chunks))
	}
	stateOf(m) // checks the index and the records agree after the rebuild
	res := m.Apply(&Entry{Time: 12 * sec, Ops: []Op{keyed("a", 1, "new3"), keyed("a", 1, "old3")}})
	want := []Result{ok(n + 4), ok(n + 11)}
	if !reflect.DeepEqual(res, want) {
		t.Fatalf("after shrink: got %v, want %v", res, want)
	}
}

func TestApplyToAppendsAndDoesNotAllocate(t *testing.T) {
	m := New(Config{})
	e := &Entry{Time: 1, Ops: []Op{add("a", 1), add("b", -1), keyed("a", 1, "k"), keyed("a", 1, "k")}}
	dst := m.ApplyTo([]Result{{Value: 42}}, e)
	want := []Result{{Value: 42}, ok(1), ok(-1), ok(2), ok(2)}
	if !reflect.DeepEqual(dst, want) {
		t.Fatalf("ApplyTo = %v, want %v", dst, want)
	}
	e.Ops = e.Ops[:2] // existing counters, no keys: the steady state
	allocs := testing.AllocsPerRun(100, func() { dst = m.ApplyTo(dst[:0], e) })
	if allocs != 0 {
		t.Fatalf("ApplyTo allocates %.1f times per entry", allocs)
	}
	// A dedup hit does not allocate either.
	e.Ops = []Op{keyed("a", 1, "k")}
	allocs = testing.AllocsPerRun(100, func() { dst = m.ApplyTo(dst[:0], e) })
	if allocs != 0 {
		t.Fatalf("ApplyTo allocates %.1f times per dedup hit", allocs)
	}
}

func TestCodeString(t *testing.T) {
	for c, want := range map[Code]string{
		OK: "ok", ErrOverflow: "overflow", ErrKeyReused: "key_reused", ErrInvalidOp: "invalid_op", ErrOutOfBounds: "out_of_bounds", 200: "Code(200)",
	} {
		if got := c.String(); got != want {
			t.Errorf("Code(%d).String() = %q, want %q", uint8(c), got, want)
		}
	}
}

func TestStateOfChecksInvariants(t *testing.T) {
	// stateOf must notice a zero counter; otherwise the tests relying on it
	// for the "zero is deleted" invariant would pass vacuously.
	m := New(Config{})
	m.ctrs.put("z", counter{})
	defer func() {
		if recover() == nil {
			t.Fatal("stateOf accepted a zero counter")
		}
	}()
	stateOf(m)
}

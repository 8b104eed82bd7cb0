package fsm

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const ms = int64(time.Millisecond)

func like(name, actor string) Op   { return Op{Kind: OpActorAdd, Name: name, Actor: actor} }
func unlike(name, actor string) Op { return Op{Kind: OpActorRemove, Name: name, Actor: actor} }

// changed is the Result of an actor op that moved the counter to v.
func changed(v int64) Result { return Result{Value: v, Code: OK, Changed: true} }

func oob(v int64) Result { return Result{Value: v, Code: ErrOutOfBounds} }

func atLeast(name string, delta, min int64) Op {
	return Op{Kind: OpAdd, Name: name, Delta: delta, HasMin: true, Min: min}
}

func atMost(name string, delta, max int64) Op {
	return Op{Kind: OpAdd, Name: name, Delta: delta, HasMax: true, Max: max}
}

func withTTL(op Op, ttlMillis int64) Op { op.TTL = ttlMillis; return op }

func withKey(op Op, key string) Op { op.Key = key; return op }

// exp sets the expiry a Result should report.
func exp(r Result, at int64) Result { r.ExpiresAt = at; return r }

// run applies the ops in one entry at time now and checks the results.
func run(t *testing.T, m *Machine, now int64, ops []Op, want ...Result) {
	t.Helper()
	got := m.Apply(&Entry{Time: now, Ops: ops})
	if want == nil {
		want = []Result{}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("at %d: %v\n got %v\nwant %v", now, ops, got, want)
	}
	stateOf(m) // check the invariants after every entry
}

func TestActors(t *testing.T) {
	m := New(Config{})
	run(t, m, 1, []Op{like("p", "alice"), like("p", "alice"), like("p", "bob")},
		changed(1), ok(1), changed(2))
	run(t, m, 2, []Op{like("p", "alice"), unlike("p", "carol"), unlike("p", "alice"), unlike("p", "alice")},
		ok(2), ok(2), changed(1), ok(1))
	if !m.IsMember("p", "bob") || m.IsMember("p", "alice") || m.IsMember("p", "carol") || m.IsMember("q", "bob") {
		t.Fatal("IsMember wrong")
	}
	// Interleaved with another counter and with plain adds on the same one.
	run(t, m, 3, []Op{like("q", "bob"), add("p", 10), like("p", "alice"), unlike("q", "bob"), like("p", "bob")},
		changed(1), ok(11), changed(12), changed(0), ok(12))
	if m.Counters() != 1 {
		t.Fatalf("q liked and unliked: Counters = %d, want 1", m.Counters())
	}
	// At value 0 the counter is still held: it has actors.
	run(t, m, 4, []Op{add("p", -12)}, ok(0))
	if m.Counters() != 1 || !m.IsMember("p", "alice") {
		t.Fatal("counter with actors dropped at 0")
	}
	// Removing the last actor drops the set, and at 0 the counter.
	run(t, m, 5, []Op{unlike("p", "alice"), add("p", 1), unlike("p", "bob")}, changed(-1), ok(0), changed(-1))
	run(t, m, 6, []Op{add("p", 1)}, ok(0))
	if c, _ := m.ctrs.get("p"); m.Counters() != 0 || c.actors != nil {
		t.Fatalf("empty counter held: %+v", c)
	}
}

func TestActorRemoveNonMemberOfAbsentCounter(t *testing.T) {
	m := New(Config{})
	run(t, m, 1, []Op{unlike("p", "x")}, ok(0))
	if m.Counters() != 0 {
		t.Fatal("unlike of an absent counter created it")
	}
}

func TestManyActors(t *testing.T) {
	m := New(Config{})
	const n = 5000
	actor := func(i int) string { return fmt.Sprintf("user-%05d", i) }
	for round := range 2 { // the second round adds nothing
		ops := make([]Op, n)
		for i := range ops {
			ops[i] = like("p", actor(i))
		}
		for i, r := range m.Apply(&Entry{Time: int64(round + 1), Ops: ops}) {
			want := Result{Value: int64(i + 1), Changed: true}
			if round == 1 {
				want = ok(n)
			}
			if r != want {
				t.Fatalf("round %d like %d: %v, want %v", round, i, r, want)
			}
		}
	}
	var ops []Op
	for i := 0; i < n; i += 2 {
		ops = append(ops, unlike("p", actor(i)))
	}
	m.Apply(&Entry{Time: 3, Ops: ops})
	if v := m.Value("p"); v != n/2 {
		t.Fatalf("Value = %d, want %d", v, n/2)
	}
	for i := range n {
		if m.IsMember("p", actor(i)) != (i%2 == 1) {
			t.Fatalf("IsMember(%d) wrong", i)
		}
	}
	if got := len(stateOf(m).Counters["p"].Actors); got != n/2 {
		t.Fatalf("%d actors held, want %d", got, n/2)
	}
}

func TestActorOverflow(t *testing.T) {
	m := New(Config{})
	run(t, m, 1, []Op{add("p", math.MaxInt64), like("p", "a"), add("q", math.MinInt64), like("q", "b"), add("q", -1), unlike("q", "b")},
		ok(math.MaxInt64), Result{Value: math.MaxInt64, Code: ErrOverflow}, ok(math.MinInt64), changed(math.MinInt64+1), ok(math.MinInt64),
		Result{Value: math.MinInt64, Code: ErrOverflow})
	if m.IsMember("p", "a") || !m.IsMember("q", "b") {
		t.Fatal("refused actor op changed the set")
	}
}

func TestActorDedup(t *testing.T) {
	m := New(Config{})
	run(t, m, 1, []Op{withKey(like("p", "a"), "k"), withKey(like("p", "a"), "k"), like("p", "a"), withKey(like("p", "b"), "k"), withKey(unlike("p", "a"), "k")},
		changed(1), changed(1), ok(1), Result{Value: 1, Code: ErrKeyReused}, Result{Value: 1, Code: ErrKeyReused})
	run(t, m, 2, []Op{unlike("p", "a"), withKey(like("p", "a"), "k")}, changed(0), changed(1))
	if m.IsMember("p", "a") {
		t.Fatal("dedup hit re-added the actor")
	}
}

// A like set shared with a Snapshot is copied, not changed, by later ops.
func TestActorSetCopyOnWrite(t *testing.T) {
	m := New(Config{})
	run(t, m, 1, []Op{like("p", "a"), like("p", "b")}, changed(1), changed(2))
	s1 := m.Snapshot()
	want1 := snapBytes(t, s1)
	run(t, m, 2, []Op{like("p", "c"), unlike("p", "a"), like("q", "x")}, changed(3), changed(2), changed(1))
	s2 := m.Snapshot()
	want2 := snapBytes(t, s2)
	run(t, m, 3, []Op{like("p", "d"), like("q", "y"), unlike("p", "b"), unlike("p", "c"), unlike("p", "d")},
		changed(3), changed(2), changed(2), changed(1), changed(0))
	if got := snapBytes(t, s1); string(got) != string(want1) {
		t.Fatal("first snapshot changed")
	}
	if got := snapBytes(t, s2); string(got) != string(want2) {
		t.Fatal("second snapshot changed")
	}
	// Sets made since the last Snapshot are changed in place.
	q, _ := m.ctrs.get("q")
	run(t, m, 4, []Op{like("q", "z")}, changed(3))
	if q2, _ := m.ctrs.get("q"); q2.actors != q.actors {
		t.Fatal("a set no snapshot shares was copied")
	}
}

func TestBoundsStock(t *testing.T) {
	const initial = 5
	m := New(Config{})
	run(t, m, 1, []Op{add("stock", initial)}, ok(initial))
	var results []Result
	for i := range 3 * initial {
		results = append(results, m.Apply(&Entry{Time: int64(2 + i), Ops: []Op{atLeast("stock", -1, 0)}})...)
	}
	for i, r := range results {
		want := ok(int64(initial - 1 - i))
		if i >= initial {
			want = oob(0)
		}
		if r != want {
			t.Fatalf("decrement %d: %v, want %v", i, r, want)
		}
	}
	if m.Counters() != 0 {
		t.Fatal("stock at 0 is still held")
	}
	// A bound refuses an op on an absent counter too, and creates nothing.
	run(t, m, 100, []Op{atLeast("other", -1, 0), atLeast("other", -2, -2), atLeast("other", -1, -2)}, oob(0), ok(-2), oob(-2))
}

func TestBoundsMax(t *testing.T) {
	m := New(Config{})
	run(t, m, 1, []Op{atMost("c", 4, 10), atMost("c", 4, 10), atMost("c", 4, 10), atMost("c", 2, 10), atMost("c", 1, 10), atMost("c", -20, 10)},
		ok(4), ok(8), oob(8), ok(10), oob(10), ok(-10))
	// Both bounds, and a zero delta whose current value is outside them.
	both := Op{Kind: OpAdd, Name: "c", HasMin: true, Min: -5, HasMax: true, Max: 5}
	run(t, m, 2, []Op{both, withDelta(both, 10), withDelta(both, 7), withDelta(both, 1)}, oob(-10), ok(0), oob(0), ok(1))
	// Overflow is checked before the bounds.
	run(t, m, 3, []Op{add("big", math.MaxInt64), atMost("big", 1, math.MaxInt64), atMost("big", 1, 0)},
		ok(math.MaxInt64), Result{Value: math.MaxInt64, Code: ErrOverflow}, Result{Value: math.MaxInt64, Code: ErrOverflow})
	// min > max is invalid; min == max is fine.
	run(t, m, 4, []Op{{Kind: OpAdd, Name: "c", Delta: 1, HasMin: true, Min: 1, HasMax: true, Max: 0},
		{Kind: OpAdd, Name: "c", Delta: 1, HasMin: true, Min: 2, HasMax: true, Max: 2}},
		Result{Value: 1, Code: ErrInvalidOp}, ok(2))
}

func withDelta(op Op, d int64) Op { op.Delta = d; return op }

func TestBoundsWithDedup(t *testing.T) {
	m := New(Config{})
	run(t, m, 1, []Op{add("stock", 1)}, ok(1))
	run(t, m, 2, []Op{withKey(atLeast("stock", -1, 0), "o1"), withKey(atLeast("stock", -1, 0), "o1"), withKey(atLeast("stock", -1, 0), "o2")},
		ok(0), ok(0), oob(0))
	// Restocked: the retries still get their first answers, including the refusal.
	run(t, m, 3, []Op{add("stock", 5), withKey(atLeast("stock", -1, 0), "o1"), withKey(atLeast("stock", -1, 0), "o2")},
		ok(5), ok(0), oob(0))
	// The same key with other bounds is a reuse.
	run(t, m, 4, []Op{withKey(atLeast("stock", -1, 1), "o1"), withKey(add("stock", -1), "o2"), withKey(atMost("stock", -1, 0), "o2")},
		Result{Value: 5, Code: ErrKeyReused}, Result{Value: 5, Code: ErrKeyReused}, Result{Value: 5, Code: ErrKeyReused})
}

// Every field of the op is part of what a key remembers.
func TestDedupFingerprint(t *testing.T) {
	base := Op{Kind: OpAdd, Name: "c", Delta: 1, Key: "k", HasMin: true, Min: -5, HasMax: true, Max: 5, TTL: 1000}
	baseLike := Op{Kind: OpActorAdd, Name: "c", Key: "k", Actor: "a"}
	variants := map[string]Op{
		"kind":    {Kind: OpActorRemove, Name: "c", Key: "k", Actor: "a"},
		"name":    func() Op { op := base; op.Name = "d"; return op }(),
		"delta":   func() Op { op := base; op.Delta = 2; return op }(),
		"no min":  func() Op { op := base; op.HasMin, op.Min = false, 0; return op }(),
		"min":     func() Op { op := base; op.Min = -4; return op }(),
		"no max":  func() Op { op := base; op.HasMax, op.Max = false, 0; return op }(),
		"max":     func() Op { op := base; op.Max = 4; return op }(),
		"ttl":     func() Op { op := base; op.TTL = 999; return op }(),
		"no ttl":  func() Op { op := base; op.TTL = 0; return op }(),
		"plain":   {Kind: OpAdd, Name: "c", Delta: 1, Key: "k"},
		"actor":   {Kind: OpActorAdd, Name: "c", Key: "k", Actor: "b"},
		"to like": baseLike,
	}
	for what, v := range variants {
		for _, first := range []Op{base, baseLike} {
			if v == first {
				continue
			}
			m := New(Config{})
			r1 := m.Apply(&Entry{Time: 1, Ops: []Op{first}})[0]
			if r2 := m.Apply(&Entry{Time: 2, Ops: []Op{first}})[0]; r2 != r1 {
				t.Fatalf("%s: retry %v, first %v", what, r2, r1)
			}
			if r := m.Apply(&Entry{Time: 3, Ops: []Op{v}})[0]; r.Code != ErrKeyReused {
				t.Fatalf("first %+v then %s %+v: %v, want key_reused", first, what, v, r)
			}
		}
	}
}

func TestTTLExpiresExactly(t *testing.T) {
	m := New(Config{})
	t0 := 1000 * sec
	end := t0 + 1500*ms
	run(t, m, t0, []Op{withTTL(add("c", 3), 1500)}, exp(ok(3), end))
	if m.NextExpiry() != end {
		t.Fatalf("NextExpiry = %d, want %d", m.NextExpiry(), end)
	}
	// Reads: live one ns before, gone at the expiry.
	if v, e := m.Get("c", end-1); v != 3 || e != end {
		t.Fatalf("Get before expiry = %d, %d", v, e)
	}
	if v, e := m.Get("c", end); v != 0 || e != 0 {
		t.Fatalf("Get at expiry = %d, %d", v, e)
	}
	if m.IsMemberAt("c", "x", end) || m.Value("c") != 3 {
		t.Fatal("Value/IsMemberAt wrong")
	}
	// An existing, unexpired counter keeps its window, whatever the op's TTL.
	run(t, m, end-1, []Op{withTTL(add("c", 1), 60_000), add("c", 1), withTTL(add("c", -5), 1)},
		exp(ok(4), end), exp(ok(5), end), exp(ok(0), end))
	// At 0 it is still held: it has an expiry (the window).
	if m.Counters() != 1 {
		t.Fatalf("Counters = %d, want 1", m.Counters())
	}
	run(t, m, end, nil)
	if m.Counters() != 0 || m.NextExpiry() != 0 || len(m.expiries) != 0 {
		t.Fatalf("expired counter not reclaimed: %d counters, heap %v", m.Counters(), m.expiries)
	}
}

func TestTTLNewWindowAfterExpiry(t *testing.T) {
	m := New(Config{})
	run(t, m, 10*sec, []Op{withTTL(add("c", 5), 1000)}, exp(ok(5), 11*sec))
	// The first write at or after the expiry starts afresh: a new value and
	// a new window, from this entry's time.
	run(t, m, 11*sec+7, []Op{withTTL(add("c", 2), 3000), withTTL(add("c", 1), 1000)},
		exp(ok(2), 14*sec+7), exp(ok(3), 14*sec+7))
	// A write without a TTL on an expired counter makes a permanent one.
	run(t, m, 14*sec+7, []Op{add("c", 1), withTTL(add("c", 1), 1000)}, ok(1), ok(2))
	run(t, m, 100*sec, []Op{add("c", 0)}, ok(2))
}

func TestTTLOnPermanentCounterIsIgnored(t *testing.T) {
	m := New(Config{})
	run(t, m, 1, []Op{add("c", 1), withTTL(add("c", 1), 1000), like("p", "a"), withTTL(add("p", 0), 1000)}, ok(1), ok(2), changed(1), ok(1))
	if m.NextExpiry() != 0 {
		t.Fatal("a held counter got an expiry")
	}
}

func TestTTLRefusedOpSetsNoExpiry(t *testing.T) {
	m := New(Config{})
	run(t, m, sec, []Op{withTTL(atMost("c", 5, 3), 1000), withTTL(atLeast("c", -1, 0), 1000), withTTL(add("c", 0), 1000)},
		oob(0), oob(0), exp(ok(0), 2*sec))
	if m.Counters() != 1 {
		t.Fatal("a zero-delta add with a TTL must start a window")
	}
	run(t, m, 2*sec, []Op{add("big", math.MaxInt64), withTTL(add("o", 0), 0)}, ok(math.MaxInt64), ok(0))
	run(t, m, 3*sec, []Op{withTTL(add("big", 1), 1000)}, Result{Value: math.MaxInt64, Code: ErrOverflow})
	if m.NextExpiry() != 0 || m.Counters() != 1 {
		t.Fatalf("refused ops left expiries: next %d, counters %d", m.NextExpiry(), m.Counters())
	}
}

func TestExpiredCounterLosesActors(t *testing.T) {
	m := New(Config{})
	run(t, m, sec, []Op{withTTL(add("p", 0), 1000), like("p", "a"), like("p", "b")}, exp(ok(0), 2*sec), exp(changed(1), 2*sec), exp(changed(2), 2*sec))
	if !m.IsMemberAt("p", "a", 2*sec-1) || m.IsMemberAt("p", "a", 2*sec) {
		t.Fatal("IsMemberAt ignores the expiry")
	}
	run(t, m, 2*sec, []Op{like("p", "a"), unlike("p", "b")}, changed(1), ok(1))
	if m.NextExpiry() != 0 {
		t.Fatal("counter renewed by a like kept an expiry")
	}
}

func TestNextExpiryAndReclaim(t *testing.T) {
	m := New(Config{})
	const n = 1000
	var ops []Op
	for i := range n {
		ops = append(ops, withTTL(add(fmt.Sprint("c", i), 1), int64(1+(i*7919)%n)))
	}
	m.Apply(&Entry{Time: sec, Ops: ops})
	if m.Counters() != n || m.NextExpiry() != sec+ms {
		t.Fatalf("Counters %d NextExpiry %d", m.Counters(), m.NextExpiry())
	}
	bigHeap := cap(m.expiries)
	for k := int64(1); k <= n; k++ {
		m.Apply(&Entry{Time: sec + k*ms})
		if m.Counters() != n-int(k) {
			t.Fatalf("at +%dms: Counters %d, want %d", k, m.Counters(), n-k)
		}
		if want := sec + (k+1)*ms; k < n && m.NextExpiry() != want {
			t.Fatalf("at +%dms: NextExpiry %d, want %d", k, m.NextExpiry(), want)
		}
		stateOf(m)
	}
	if m.NextExpiry() != 0 || cap(m.expiries) >= bigHeap {
		t.Fatalf("heap not emptied and shrunk: next %d, cap %d (was %d)", m.NextExpiry(), cap(m.expiries), bigHeap)
	}
}

// Lazy deletion: heap items whose counter has gone or has another expiry
// are skipped, and must not drop the counter.
func TestReclaimSkipsStaleItems(t *testing.T) {
	m := New(Config{})
	run(t, m, sec, []Op{withTTL(add("a", 1), 5000), add("b", 1)}, exp(ok(1), 6*sec), ok(1))
	m.push(expiry{at: 2 * sec, name: "a"})    // a has another expiry
	m.push(expiry{at: 2 * sec, name: "b"})    // b has none
	m.push(expiry{at: 2 * sec, name: "gone"}) // no such counter
	if m.NextExpiry() != 2*sec {
		t.Fatal("NextExpiry ignores the heap top")
	}
	run(t, m, 3*sec, nil)
	if m.Value("a") != 1 || m.Value("b") != 1 || m.Counters() != 2 || m.NextExpiry() != 6*sec {
		t.Fatalf("stale items dropped live counters: %v, next %d", stateOf(m).Counters, m.NextExpiry())
	}
	run(t, m, 6*sec, nil)
	if m.Value("a") != 0 || m.Value("b") != 1 {
		t.Fatal("the current item did not drop its counter")
	}
}

// At the end of time an expiry saturates at math.MaxInt64, so a window made
// at Time math.MaxInt64 is already over: the next op finds the counter
// expired, and its heap item goes stale if that op makes a permanent one.
func TestTTLAtTheEndOfTime(t *testing.T) {
	m := New(Config{})
	end := int64(math.MaxInt64)
	run(t, m, end-500*ms, []Op{withTTL(add("a", 1), 1000)}, exp(ok(1), end))
	run(t, m, end, []Op{withTTL(add("b", 1), 1000), withTTL(add("b", 1), 1000), add("b", 5), add("a", 1)},
		exp(ok(1), end), exp(ok(1), end), ok(5), ok(1))
	if m.Value("b") != 5 || m.Counters() != 2 {
		t.Fatalf("got %+v", stateOf(m).Counters)
	}
	run(t, m, end, nil)
	if m.Value("b") != 5 || m.Value("a") != 1 || m.Counters() != 2 || m.NextExpiry() != 0 {
		t.Fatalf("after reclaim: %+v, next %d", stateOf(m).Counters, m.NextExpiry())
	}
}

// Expiry runs on the largest Time seen: when the leader's clock steps back,
// an expired counter stays expired and new windows start at LastTime.
func TestTTLClockStepsBack(t *testing.T) {
	m := New(Config{})
	run(t, m, 10*sec, []Op{withTTL(add("c", 1), 1000)}, exp(ok(1), 11*sec))
	run(t, m, 12*sec, nil)
	run(t, m, 10*sec+500*ms, []Op{add("c", 0), withTTL(add("d", 1), 1000)}, ok(0), exp(ok(1), 13*sec))
}

// A fixed-window rate limiter: max 100 per 1000 ms window. Many ops, spread
// over entries at uneven times: exactly 100 pass in each window, and the
// refusals report the window's end.
func TestFixedWindowRateLimiter(t *testing.T) {
	m := New(Config{})
	limit := Op{Kind: OpAdd, Name: "rate/1.2.3.4", Delta: 1, HasMax: true, Max: 100, TTL: 1000}
	now := 5 * sec
	var windowEnd int64
	allowed := map[int64]int{} // window end -> ops allowed
	attempts := 0
	for i := range 3000 {
		now += int64(i%7) * 3 * ms // 0..18 ms apart: ~ 110 entries and 330 ops per window
		n := 1 + i%5
		ops := make([]Op, n)
		for j := range ops {
			ops[j] = limit
		}
		if now >= windowEnd {
			windowEnd = now + 1000*ms
		}
		for _, r := range m.Apply(&Entry{Time: now, Ops: ops}) {
			attempts++
			if r.ExpiresAt != windowEnd {
				t.Fatalf("at %d: ExpiresAt %d, want %d", now, r.ExpiresAt, windowEnd)
			}
			switch {
			case r.Code == OK:
				allowed[windowEnd]++
				if r.Value != int64(allowed[windowEnd]) {
					t.Fatalf("allowed op %d of its window has Value %d", allowed[windowEnd], r.Value)
				}
			case r.Code == ErrOutOfBounds && r.Value == 100:
			default:
				t.Fatalf("at %d: %v", now, r)
			}
		}
	}
	if len(allowed) < 10 {
		t.Fatalf("only %d windows", len(allowed))
	}
	for end, n := range allowed {
		if n != 100 && end != windowEnd { // the last window may be cut short
			t.Fatalf("window ending %d allowed %d ops", end, n)
		}
	}
	if attempts < 3*100*len(allowed)/2 {
		t.Fatalf("%d attempts over %d windows: the limit was hardly tested", attempts, len(allowed))
	}
}

func TestInvalidOpReportsExpiry(t *testing.T) {
	m := New(Config{})
	run(t, m, sec, []Op{withTTL(add("c", 2), 1000), {Kind: OpAdd, Name: "c", Delta: 1, TTL: -1}},
		exp(ok(2), 2*sec), exp(Result{Value: 2, Code: ErrInvalidOp}, 2*sec))
}

// Actors of up to 15 bytes are packed with their length, longer ones kept as
// strings: every length and trailing-zero variant must stay distinct and
// come back as the same string, in order, through a snapshot.
func TestActorPacking(t *testing.T) {
	actors := []string{
		"a", "a\x00", "a\x00\x00", "\x00", "\x00\x00", "\xff",
		strings.Repeat("\xff", 15), strings.Repeat("\xff", 16), strings.Repeat("\x00", 15), strings.Repeat("\x00", 16),
		"user-0000000001", "user-00000000001", strings.Repeat("u", MaxActorLen), "b",
	}
	m := New(Config{})
	for i, a := range actors {
		if k, short := packActor(a); short != (len(a) <= maxShortActor) || (short && k.String() != a) {
			t.Fatalf("packActor(%q) = %v, %v", a, k, short)
		}
		run(t, m, 1, []Op{like("p", a), like("p", a)}, changed(int64(i+1)), ok(int64(i+1)))
	}
	for _, a := range actors {
		if !m.IsMember("p", a) {
			t.Fatalf("%q not a member", a)
		}
	}
	want := slices.Sorted(slices.Values(actors))
	if got := stateOf(m).Counters["p"].Actors; !slices.Equal(got, want) {
		t.Fatalf("actors %q, want %q", got, want)
	}
	r := restored(t, Config{}, snapBytes(t, m.Snapshot()))
	if !reflect.DeepEqual(stateOf(r), stateOf(m)) {
		t.Fatal("restored actors differ")
	}
	for i, a := range actors {
		run(t, r, 2, []Op{unlike("p", a), unlike("p", a)}, changed(int64(len(actors)-i-1)), ok(int64(len(actors)-i-1)))
		if r.IsMember("p", a) {
			t.Fatalf("%q still a member", a)
		}
	}
	if r.Counters() != 0 {
		t.Fatal("counter left")
	}
}

// The steady state of the new ops allocates nothing either: repeated likes,
// likes and unlikes of one actor on a set no snapshot shares, bounded adds
// on a live window (allowed and refused), and their dedup hits.
func TestNewOpsDoNotAllocate(t *testing.T) {
	m := New(Config{})
	m.Apply(&Entry{Time: sec, Ops: []Op{like("p", "a"), like("p", "b"), withTTL(add("w", 1), 60_000), withKey(atMost("w", 1, 1), "k")}})
	dst := make([]Result, 0, 8)
	for name, ops := range map[string][]Op{
		"repeat like":    {like("p", "a"), unlike("p", "zz")},
		"like churn":     {unlike("p", "b"), like("p", "b")},
		"window refused": {withTTL(atMost("w", 1, 1), 60_000), withTTL(atLeast("w", -5, 0), 60_000)},
		"window allowed": {withTTL(add("w", 1), 60_000), withTTL(add("w", -1), 60_000)},
		"dedup hit":      {withKey(atMost("w", 1, 1), "k")},
	} {
		e := &Entry{Time: sec, Ops: ops}
		if allocs := testing.AllocsPerRun(100, func() { dst = m.ApplyTo(dst[:0], e) }); allocs != 0 {
			t.Errorf("%s: %.1f allocations per entry", name, allocs)
		}
	}
}

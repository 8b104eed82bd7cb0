package fsm

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"testing"
	"time"
)

// TestKeyRouteOnlyMovesKeysOffSubCounterZero is the property the split
// protocol rests on: raising n never moves a key that was routed to a
// sub-counter other than 0.
func TestKeyRouteOnlyMovesKeysOffSubCounterZero(t *testing.T) {
	const slots = 8
	hit := make([]int, slots)
	for k := range 20000 {
		key := fmt.Sprint("key-", k)
		hit[KeySlot(key, slots)]++
		for n1 := 1; n1 <= slots; n1++ {
			r1 := KeyRoute(key, n1, slots)
			if r1 < 0 || r1 >= n1 {
				t.Fatalf("KeyRoute(%q, %d) = %d: not a sub-counter", key, n1, r1)
			}
			for n2 := n1 + 1; n2 <= slots; n2++ {
				if r2 := KeyRoute(key, n2, slots); r1 != 0 && r2 != r1 {
					t.Fatalf("key %q moved from sub-counter %d to %d when n went %d -> %d", key, r1, r2, n1, n2)
				}
			}
		}
	}
	for s, c := range hit { // a usable hash spreads keys
		if c < 20000/slots/2 {
			t.Errorf("slot %d got %d of 20000 keys", s, c)
		}
	}
}

func begin(name string, n, slots int) Op { return SplitBegin(name, n, slots) }

func end(name string, n int) Op { return SplitEnd(name, n) }

// keyFor returns a key whose slot (of slots) is s.
func keyFor(prefix string, s, slots int) string {
	for i := 0; ; i++ {
		if k := fmt.Sprint(prefix, i); KeySlot(k, slots) == s {
			return k
		}
	}
}

func apply1(m *Machine, now int64, op Op) Result {
	return m.Apply(&Entry{Time: now, Ops: []Op{op}})[0]
}

func TestSplitProtocol(t *testing.T) {
	const slots = 8
	home := New(Config{})
	sub := New(Config{}) // the shard of sub-counter 2
	k0 := keyFor("a", 0, slots)
	k2 := keyFor("b", 2, slots)
	k5 := keyFor("c", 5, slots)

	// Unsplit: every key is applied at home.
	for i, k := range []string{k0, k2, k5} {
		if r := apply1(home, sec, keyed("hot", 10, k)); r != (Result{Value: int64(10 * (i + 1))}) {
			t.Fatalf("add %q: %+v", k, r)
		}
	}
	if n, p := home.Split("hot"); n != 1 || p != 0 {
		t.Fatalf("Split before = %d, %d", n, p)
	}

	// Begin 4: keys routed to 1..3 are refused at home from now on.
	if r := apply1(home, 2*sec, begin("hot", 4, slots)); r.Code != OK || r.Split != 1 || r.Value != 30 {
		t.Fatalf("begin: %+v", r)
	}
	if n, p := home.Split("hot"); n != 1 || p != 4 {
		t.Fatalf("Split pending = %d, %d", n, p)
	}
	fresh2 := keyFor("fresh", 2, slots)
	if r := apply1(home, 2*sec, keyed("hot", 1, fresh2)); r.Code != ErrMoved || r.Value != 30 || r.Split != 1 {
		t.Fatalf("moved key during the split: %+v", r)
	}
	if home.DedupKeys() != 3 {
		t.Fatalf("a refused moved key was remembered: %d keys", home.DedupKeys())
	}
	// A retry of a key applied here before the split is still answered here.
	if r := apply1(home, 2*sec, keyed("hot", 10, k2)); r != (Result{Value: 20, Split: 1}) {
		t.Fatalf("retry of an old key at home: %+v", r)
	}
	// Keys that stay home, and unkeyed adds, still apply; bounds and TTL do not.
	if r := apply1(home, 2*sec, keyed("hot", 1, keyFor("z", 6, slots))); r.Code != OK || r.Value != 31 {
		t.Fatalf("home key during the split: %+v", r)
	}
	if r := apply1(home, 2*sec, add("hot", 1)); r.Code != OK || r.Value != 32 {
		t.Fatalf("unkeyed add during the split: %+v", r)
	}
	if r := apply1(home, 2*sec, Op{Kind: OpAdd, Name: "hot", Delta: 1, HasMax: true, Max: 100}); r.Code != ErrSplit || r.Value != 32 {
		t.Fatalf("bounded add on a split counter: %+v", r)
	}
	if r := apply1(home, 2*sec, Op{Kind: OpAdd, Name: "hot", Delta: 1, TTL: 1000}); r.Code != ErrSplit {
		t.Fatalf("TTL add on a split counter: %+v", r)
	}

	// The moved records: exactly k2's (slot 2 is in [1,4); 5 is not).
	moved := home.MovedKeys("hot")
	want := []Op{ImportKeyHash("hot/2", hashKey(k2), 10, 20)}
	if fmt.Sprint(moved) != fmt.Sprint(want) {
		t.Fatalf("MovedKeys = %+v; want %+v", moved, want)
	}
	// They reach the sub-counter's shard through the log.
	e := Entry{Time: 3 * sec, Ops: moved}
	dec, err := DecodeEntry(AppendEntry(nil, &e))
	if err != nil || !sameEntry(dec, e) {
		t.Fatalf("moved ops do not survive the log: %v, %+v", err, dec)
	}
	for _, op := range dec.Ops {
		if err := op.Validate(); err != nil {
			t.Fatalf("moved op invalid: %v", err)
		}
		if r := apply1(sub, 3*sec, op); r.Code != OK {
			t.Fatalf("import: %+v", r)
		}
		if r := apply1(sub, 3*sec, op); r.Code != OK { // idempotent
			t.Fatalf("import again: %+v", r)
		}
	}
	// A retry of k2 that lands on sub-counter 2 counts nothing.
	if r := apply1(sub, 4*sec, keyed("hot/2", 10, k2)); r != (Result{Value: 20}) {
		t.Fatalf("retry of a moved key on its sub-counter: %+v", r)
	}
	if v := sub.Value("hot/2"); v != 0 {
		t.Fatalf("sub-counter counted a retry: %d", v)
	}

	// End 4: the factor routers see.
	if r := apply1(home, 5*sec, end("hot", 4)); r.Code != OK || r.Split != 4 {
		t.Fatalf("end: %+v", r)
	}
	if n, p := home.Split("hot"); n != 4 || p != 0 || home.PendingSplits() != nil {
		t.Fatalf("Split after = %d, %d, pending %v", n, p, home.PendingSplits())
	}
	if r := apply1(home, 5*sec, add("hot", 1)); r.Split != 4 {
		t.Fatalf("result on a split counter does not say it: %+v", r)
	}
	// Nor does a retry answered from the dedup table, even of a key first
	// applied before the split.
	if r := apply1(home, 5*sec, keyed("hot", 10, k0)); r.Value != 10 || r.Split != 4 {
		t.Fatalf("retry on a split counter: %+v", r)
	}
	// Shrinking is refused; the same factor is a no-op.
	if r := apply1(home, 5*sec, begin("hot", 2, slots)); r.Code != ErrSplitShrink || r.Split != 4 {
		t.Fatalf("shrink: %+v", r)
	}
	if r := apply1(home, 5*sec, begin("hot", 4, slots)); r.Code != OK || r.Split != 4 {
		t.Fatalf("same factor: %+v", r)
	}
	if r := apply1(home, 5*sec, begin("hot", 6, 16)); r.Code != ErrNotSplittable {
		t.Fatalf("another shard count: %+v", r)
	}
	if n, p := home.Split("hot"); n != 4 || p != 0 {
		t.Fatalf("refused begins changed the split: %d, %d", n, p)
	}
	// An end without a begin, and a split of an expiring counter, are refused.
	if r := apply1(home, 5*sec, end("cold", 4)); r.Code != ErrNotSplittable {
		t.Fatalf("end without begin: %+v", r)
	}
	apply1(home, 5*sec, Op{Kind: OpAdd, Name: "window", Delta: 1, TTL: 60000})
	if r := apply1(home, 5*sec, begin("window", 2, slots)); r.Code != ErrNotSplittable {
		t.Fatalf("split of an expiring counter: %+v", r)
	}
	if home.SplitCounters() != 1 {
		t.Fatalf("SplitCounters = %d", home.SplitCounters())
	}
}

// TestSplitBeginsRace: two splitters begin different factors; whichever
// ends first, the later end takes the factor up, and the keys each moves
// are the ones between the factor then and the pending one.
func TestSplitBeginsRace(t *testing.T) {
	const slots = 8
	m := New(Config{})
	var keys []string
	for s := range slots {
		k := keyFor("k", s, slots)
		keys = append(keys, k)
		apply1(m, sec, keyed("hot", 1, k))
	}
	apply1(m, sec, begin("hot", 3, slots))
	apply1(m, sec, begin("hot", 6, slots))
	if n, p := m.Split("hot"); n != 1 || p != 6 {
		t.Fatalf("after two begins: %d, %d", n, p)
	}
	if got := len(m.MovedKeys("hot")); got != 5 { // slots 1..5
		t.Fatalf("MovedKeys after begin 6: %d records", got)
	}
	apply1(m, sec, end("hot", 3))
	if n, p := m.Split("hot"); n != 3 || p != 6 {
		t.Fatalf("after end 3: %d, %d", n, p)
	}
	if got := len(m.MovedKeys("hot")); got != 3 { // slots 3..5
		t.Fatalf("MovedKeys after end 3: %d records", got)
	}
	// Keys of slots 3..5 are still refused (pending 6); 1..2 now route away.
	for s, k := range keys {
		r := apply1(m, 2*sec, keyed("hot", 1, k+"x"))
		wantMoved := KeyRoute(k+"x", 6, slots) != 0
		if (r.Code == ErrMoved) != wantMoved {
			t.Fatalf("slot %d key: %+v (want moved %v)", s, r, wantMoved)
		}
	}
	apply1(m, sec, end("hot", 6))
	if n, p := m.Split("hot"); n != 6 || p != 0 {
		t.Fatalf("after end 6: %d, %d", n, p)
	}
}

func TestSplitSnapshotRoundTrip(t *testing.T) {
	m := New(Config{DedupTTL: time.Minute})
	apply1(m, sec, keyed("hot", 5, "k1"))
	apply1(m, sec, begin("hot", 4, 8))
	apply1(m, sec, end("hot", 4))
	apply1(m, sec, begin("warm", 2, 8)) // left pending
	apply1(m, sec, ImportKey("other/3", "k9", 2, 7))
	b := snapBytes(t, m.Snapshot())
	if b[len(snapMagic)] != snapV4 {
		t.Fatalf("snapshot version %d, want %d", b[len(snapMagic)], snapV4)
	}
	// The same state, written as version 3 before version 4 existed,
	// restores to it too.
	golden, err := os.ReadFile("testdata/split-v3.snap")
	if err != nil {
		t.Fatal(err)
	}
	if g := restored(t, Config{DedupTTL: time.Minute}, golden); !reflect.DeepEqual(stateOf(g), stateOf(m)) {
		t.Fatalf("golden v3 restores to\n%+v\nwant %+v", stateOf(g), stateOf(m))
	}
	r := restored(t, Config{DedupTTL: time.Minute}, b)
	if fmt.Sprint(stateOf(r)) != fmt.Sprint(stateOf(m)) {
		t.Fatalf("restored state differs:\n%+v\n%+v", stateOf(r), stateOf(m))
	}
	if !bytes.Equal(snapBytes(t, r.Snapshot()), b) {
		t.Fatal("restored machine writes different bytes")
	}
	if p := r.PendingSplits(); p["warm"] != 2 || len(p) != 1 {
		t.Fatalf("PendingSplits after restore = %v", p)
	}
	// The imported key answers a retry on the restored machine.
	if res := apply1(r, 2*sec, keyed("other/3", 2, "k9")); res != (Result{Value: 7}) {
		t.Fatalf("imported key after restore: %+v", res)
	}
	// Without splits, the version stays 2 (or 1).
	plain := New(Config{})
	apply1(plain, sec, add("x", 1))
	if v := snapBytes(t, plain.Snapshot())[len(snapMagic)]; v != snapV1 {
		t.Fatalf("plain snapshot version %d", v)
	}
}

func TestRestoreRejectsBadSplits(t *testing.T) {
	for name, st := range map[string][3]uint64{
		"zero n":          {0, 0, 8},
		"n over slots":    {9, 0, 8},
		"slots over max":  {2, 0, MaxSplit + 1},
		"pending below n": {4, 3, 8},
		"pending = n":     {4, 4, 8},
		"pending > slots": {2, 9, 8},
		"wraps uint16":    {1 + 1<<16, 0, 8},
	} {
		t.Run(name, func(t *testing.T) {
			body := append([]byte(snapMagic), snapV3, 0, 0, 0, 1) // time 0, no counters, no dedup, one split
			body = appendString(body, "hot")
			for _, v := range st {
				body = appendUvarintTest(body, v)
			}
			if err := New(Config{}).Restore(bytes.NewReader(withCRC(body))); err == nil {
				t.Fatal("restored a bad split state")
			}
		})
	}
}

func appendUvarintTest(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func TestSplitOpsValidate(t *testing.T) {
	good := []Op{
		begin("hot", 2, 2), begin("hot", MaxSplit, MaxSplit), end("hot", 3),
		ImportKey("hot/3", "k", 1, 0),
	}
	for _, op := range good {
		if err := op.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v", op, err)
		}
		// They survive the entry encoding.
		e, err := DecodeEntry(AppendEntry(nil, &Entry{Time: 1, Ops: []Op{op}}))
		if err != nil || fmt.Sprint(e.Ops[0]) != fmt.Sprint(op) {
			t.Errorf("round trip of %+v: %+v, %v", op, e, err)
		}
	}
	bad := []Op{
		begin("hot", 1, 8), begin("hot", 9, 8), begin("hot", 2, MaxSplit+1), begin("hot/2", 2, 8),
		{Kind: OpSplitBegin, Name: "hot", Delta: 2, Max: 8}, // no HasMax
		{Kind: OpSplitBegin, Name: "hot", Delta: 2, Max: 8, HasMax: true, Key: "k"},
		end("hot", 1), end("hot", MaxSplit+1), end("hot/3", 3),
		{Kind: OpImportKey, Name: "hot", Delta: 1, Key: "k", HasMin: true}, // not a sub-counter
		{Kind: OpImportKey, Name: "hot/3", Delta: 1, HasMin: true},         // no key
		{Kind: OpImportKey, Name: "hot/3", Delta: 1, Key: "k"},             // no HasMin
	}
	for _, op := range bad {
		if err := op.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", op)
		}
	}
}

// TestSplitOpConstructors: the constructors build valid ops whose
// accessors read back what they were given, through the entry encoding.
func TestSplitOpConstructors(t *testing.T) {
	ops := []Op{SplitBegin("hot", 3, 8), SplitEnd("hot", 3), ImportKey("hot/2", "k", -4, 17)}
	for _, op := range ops {
		if err := op.Validate(); err != nil {
			t.Fatalf("%+v: %v", op, err)
		}
	}
	e, err := DecodeEntry(AppendEntry(nil, &Entry{Time: 1, Ops: ops}))
	if err != nil {
		t.Fatal(err)
	}
	b, en, ik := e.Ops[0], e.Ops[1], e.Ops[2]
	if b.Kind != OpSplitBegin || b.Name != "hot" || b.SplitFactor() != 3 || b.SplitSlots() != 8 {
		t.Errorf("begin decoded as %+v", b)
	}
	if en.Kind != OpSplitEnd || en.SplitFactor() != 3 {
		t.Errorf("end decoded as %+v", en)
	}
	if ik.Kind != OpImportKey || ik.Name != "hot/2" || ik.Key != "k" || ik.Delta != -4 || ik.ImportedValue() != 17 {
		t.Errorf("import decoded as %+v", ik)
	}
}

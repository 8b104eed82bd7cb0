package fsm

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// engagedMachine is busyMachine plus the state version 2 is for: actor sets
// (one large, one with a maximal actor), counters with expiries (one at 0
// held only by its window), and remembered actor ops, bounded and TTL ops,
// out-of-bounds answers and results with expiries.
func engagedMachine(t testing.TB) *Machine {
	m := engage(busyMachine(t))
	if m.Counters() < 8 || m.NextExpiry() == 0 {
		t.Fatalf("engagedMachine lacks state: %+v", stateOf(m).Counters)
	}
	return m
}

// engage applies engagedMachine's entries to a busy machine.
func engage(m *Machine) *Machine {
	now := 12 * sec
	var likes []Op
	for i := range 300 {
		likes = append(likes, like("post", fmt.Sprintf("user-%03d", i)))
	}
	m.Apply(&Entry{Time: now, Ops: likes})
	m.Apply(&Entry{Time: now + 1, Ops: []Op{
		withKey(like("post", "user-000"), "like-again"),
		withKey(unlike("post", "user-001"), "unlike-1"),
		like("other", strings.Repeat("u", MaxActorLen)),
		withKey(withTTL(atMost("rate", 1, 2), 5000), "r1"),
		withKey(withTTL(atMost("rate", 1, 2), 5000), "r2"),
		withKey(withTTL(atMost("rate", 1, 2), 5000), "r3"), // out of bounds
		withTTL(add("window", 0), 3000),
		withTTL(add("liked-window", 0), 4000), like("liked-window", "a"),
		withKey(Op{Kind: OpAdd, Name: "band", Delta: -3, HasMin: true, Min: -3, HasMax: true, Max: 3}, "b1"),
	}})
	return m
}

// A version 2 stream with every kind of remembered key (actor ops, bounds,
// TTLs, out-of-bounds answers, results with expiries), written before
// version 4 existed, restores to the state its entries reach today: the
// keys hashed on load, so retries and reuses still answer as they did.
func TestSnapshotV2Golden(t *testing.T) {
	b, err := os.ReadFile("testdata/engaged-v2.snap")
	if err != nil {
		t.Fatal(err)
	}
	if b[len(snapMagic)] != snapV2 {
		t.Fatalf("golden file is version %d", b[len(snapMagic)])
	}
	r := restored(t, Config{DedupTTL: 10 * time.Second}, b)
	m := engage(fillBusy(40))
	if !reflect.DeepEqual(stateOf(r), stateOf(m)) {
		t.Fatalf("golden v2 restores to\n %+v\nwant %+v", stateOf(r), stateOf(m))
	}
	e := Entry{Time: 12*sec + 2, Ops: []Op{
		withKey(like("post", "user-000"), "like-again"),
		withKey(withTTL(atMost("rate", 1, 2), 5000), "r3"),
		withKey(withTTL(atMost("rate", 1, 3), 5000), "r2"),
		keyed("c", 7, "late7"), keyed("c", 8, "late7"),
	}}
	got, want := r.Apply(&e), m.Apply(&e)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after restoring the golden v2 snapshot: %v, want %v", got, want)
	}
	if want[0] != ok(300) || want[1].Code != ErrOutOfBounds || want[2].Code != ErrKeyReused || want[3] != ok(28) || want[4].Code != ErrKeyReused {
		t.Fatalf("retries answered %v", want)
	}
}

func TestSnapshotV2RoundTrip(t *testing.T) {
	cfg := Config{DedupTTL: 10 * time.Second}
	m := engagedMachine(t)
	b := snapBytes(t, m.Snapshot())
	if b[len(snapMagic)] != snapV4 {
		t.Fatalf("wrote version %d", b[len(snapMagic)])
	}
	r := restored(t, cfg, b)
	if !reflect.DeepEqual(stateOf(r), stateOf(m)) {
		t.Fatalf("restored state differs\n got %+v\nwant %+v", stateOf(r), stateOf(m))
	}
	if r.NextExpiry() != m.NextExpiry() || r.Counters() != m.Counters() || r.DedupKeys() != m.DedupKeys() {
		t.Fatal("restored accessors differ")
	}
	if b2 := snapBytes(t, r.Snapshot()); !bytes.Equal(b, b2) {
		t.Fatal("snapshot of the restored machine differs")
	}
	// Both go on the same: retries answer as first, windows expire, sets change.
	entries := []Entry{
		{Time: 12*sec + 2, Ops: []Op{
			withKey(like("post", "user-000"), "like-again"),
			withKey(unlike("post", "user-001"), "unlike-1"),
			withKey(withTTL(atMost("rate", 1, 2), 5000), "r3"),
			withKey(withTTL(atMost("rate", 1, 2), 5000), "r2"),
			withKey(withTTL(atMost("rate", 1, 3), 5000), "r2"),
			like("post", "user-001"), unlike("post", "user-002"), like("other", "b"),
		}},
		{Time: 15*sec + 1, Ops: []Op{add("window", 1), unlike("liked-window", "a")}},
		{Time: 16*sec + 1, Ops: []Op{like("liked-window", "a")}},
		{Time: 17*sec + 1, Ops: []Op{withTTL(atMost("rate", 1, 2), 5000)}},
		{Time: 30 * sec},
	}
	for i := range entries {
		got, gotR := m.Apply(&entries[i]), r.Apply(&entries[i])
		if !reflect.DeepEqual(got, gotR) {
			t.Fatalf("entry %d: original %v, restored %v", i, got, gotR)
		}
		if i == 0 {
			want := []Result{ok(300), changed(299), exp(oob(2), 17*sec+1), exp(ok(2), 17*sec+1),
				exp(Result{Value: 2, Code: ErrKeyReused}, 17*sec+1), changed(300), changed(299), changed(2)}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("entry 0: %v\nwant %v", got, want)
			}
		}
		if !reflect.DeepEqual(stateOf(r), stateOf(m)) {
			t.Fatalf("after entry %d: states differ", i)
		}
	}
	if m.NextExpiry() != 0 || m.Value("rate") != 0 {
		t.Fatal("windows did not expire")
	}
}

func TestSnapshotLayoutV2(t *testing.T) {
	m := New(Config{})
	m.Apply(&Entry{Time: 7, Ops: []Op{
		like("a", "y"), like("a", "x"), add("a", -2),
		withTTL(add("b", 0), 1),
		withKey(atMost("c", 1, 1), "k"),
	}})
	ctr := map[byte][]byte{
		'a': {1, 'a', ctrActors, 2, 1, 'x', 1, 'y'}, // value 0: held by its actors
		'b': {1, 'b', ctrExpiry, 0x8e, 0x89, 0x7a},  // expiry 7 + 1e6
		'c': {1, 'c', ctrValue, 2},                  // value 1
	}
	body := binary.AppendVarint(append([]byte(snapMagic), snapV2), 7)
	body = append(body, 3)
	counters := bytes.Clone(body)
	body = slices.Concat(body, ctr['a'], ctr['b'], ctr['c']) // version 2 writers sorted by name
	// Version 4 writes them in canonical order: by FNV-64a of the name.
	names := []byte("abc")
	slices.SortFunc(names, func(x, y byte) int {
		return cmp.Compare(fnvString(fnvOffset, string(x)), fnvString(fnvOffset, string(y)))
	})
	for _, n := range names {
		counters = append(counters, ctr[n]...)
	}
	body = append(body, 1)                                                                          // one dedup record
	body = append(body, 8, byte(OpAdd), 1, 'c', flagDelta|flagKey|flagHasMax|flagMax, 2, 1, 'k', 2) // op
	body = append(body, 14, 2, 0, byte(OK), 0)                                                      // time, value, expiresAt, code, changed
	r := restored(t, Config{}, withCRC(body))
	if !reflect.DeepEqual(stateOf(r), stateOf(m)) {
		t.Fatalf("version 2 layout restores to\n %+v\nwant %+v", stateOf(r), stateOf(m))
	}

	// Today the same state is written as version 4: version 2's counters,
	// the compact record, and an empty split table.
	counters[len(snapMagic)] = snapV4
	kh := hashKey("k")
	body = append(counters, 1)
	body = binary.LittleEndian.AppendUint64(body, kh.lo)
	body = binary.LittleEndian.AppendUint32(body, kh.hi)
	body = binary.LittleEndian.AppendUint64(body, opPrint(&Op{Kind: OpAdd, Name: "c", HasMax: true, Max: 1}))
	body = append(body, byte(OpAdd), 2, 14, 2, byte(OK), 0) // kind, delta, time, value, code, flags
	body = append(body, 0)                                  // no splits
	if got := snapBytes(t, m.Snapshot()); !bytes.Equal(got, withCRC(body)) {
		t.Fatalf("got  % x\nwant % x", got, withCRC(body))
	}
}

// WriteTo writes version 1 while the state fits in it, so nodes that only
// know version 1 can install it, version 2 from the first use of a new
// feature until the state no longer holds any, and version 4 while any
// idempotency key is remembered.
func TestSnapshotVersionChoice(t *testing.T) {
	version := func(m *Machine) byte { return snapBytes(t, m.Snapshot())[len(snapMagic)] }
	cfg := Config{DedupTTL: 10 * time.Second}
	for _, tc := range []struct {
		name string
		op   Op
	}{
		{"actor", like("p", "a")},
		{"expiry", withTTL(add("p", 1), 1000)},
		{"bounded key", withKey(atMost("p", 1, 5), "k")},
		{"out of bounds key", withKey(atMost("p", 1, 0), "k")},
		{"actor key", withKey(unlike("p", "a"), "k")},
		{"key with expiry", withKey(add("w", 1), "k")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := New(cfg)
			m.Apply(&Entry{Time: sec, Ops: []Op{add("plain", 1), keyed("plain", 1, "pk"), withTTL(add("w", 0), 20_000)}})
			if version(m) != snapV4 {
				t.Fatal("remembered key not written as version 4")
			}
			m.Apply(&Entry{Time: 25 * sec}) // the window is over, and the key forgotten
			if version(m) != snapV1 {
				t.Fatal("plain state not written as version 1")
			}
			if tc.name == "key with expiry" {
				m.Apply(&Entry{Time: 26 * sec, Ops: []Op{withTTL(add("w", 0), 1000)}})
			}
			m.Apply(&Entry{Time: 26 * sec, Ops: []Op{tc.op}})
			want := byte(snapV2)
			if tc.op.Key != "" {
				want = snapV4
			}
			if version(m) != want {
				t.Fatalf("new state written as version %d, want %d", version(m), want)
			}
			r := restored(t, cfg, snapBytes(t, m.Snapshot()))
			if !reflect.DeepEqual(stateOf(r), stateOf(m)) {
				t.Fatal("restored state differs")
			}
			// Once keys and windows are gone and actors removed: version 1 again.
			m.Apply(&Entry{Time: 40 * sec, Ops: []Op{unlike("p", "a")}})
			if version(m) != snapV1 {
				t.Fatalf("state back to plain not written as version 1: %+v", stateOf(m))
			}
		})
	}
}

func TestSnapshotIsolationWithActors(t *testing.T) {
	m := engagedMachine(t)
	snap := m.Snapshot()
	want := snapBytes(t, m.Snapshot())
	var wg sync.WaitGroup
	got := make([][]byte, 4)
	for i := range got {
		wg.Go(func() { got[i] = snapBytes(t, snap) })
	}
	// Change every actor set and expiry (run with -race: WriteTo must not
	// read what Apply writes).
	for i := range 200 {
		m.Apply(&Entry{Time: 13*sec + int64(i)*10*ms, Ops: []Op{
			like("post", fmt.Sprint("new", i)), unlike("post", fmt.Sprintf("user-%03d", i)),
			like("other", fmt.Sprint("o", i)), like(fmt.Sprint("p", i), "a"),
			withTTL(add("rate", 1), 100),
		}})
	}
	wg.Wait()
	for _, g := range append(got, snapBytes(t, snap)) {
		if !bytes.Equal(g, want) {
			t.Fatal("applying after Snapshot changed what it writes")
		}
	}
}

func TestRestoreRejectsV2(t *testing.T) {
	header := func() []byte { return binary.AppendVarint(append([]byte(snapMagic), snapV2), 7) }
	counters := func(recs ...[]byte) []byte {
		b := binary.AppendUvarint(header(), uint64(len(recs)))
		for _, r := range recs {
			b = append(b, r...)
		}
		return b
	}
	ctr := func(name string, rest ...byte) []byte { return append(appendString(nil, name), rest...) }
	noDedup := func(b []byte) []byte { return withCRC(append(b, 0)) }
	rec := func(op Op, rest ...byte) []byte {
		b := appendOpV2(nil, &op)
		return append(appendString(nil, string(b)), rest...)
	}
	dedup := func(recs ...[]byte) []byte {
		b := binary.AppendUvarint(counters(), uint64(len(recs)))
		for _, r := range recs {
			b = append(b, r...)
		}
		return withCRC(b)
	}
	op := keyed("a", 1, "k")
	good := engagedMachine(t)
	goodBytes := snapBytes(t, good.Snapshot())
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"valid counters", noDedup(counters(ctr("a", ctrValue|ctrExpiry|ctrActors, 2, 2, 2, 1, 'x', 1, 'y'))), nil},
		{"valid record", dedup(rec(op, 2, 2, 0, byte(OK), 0)), nil},
		{"no flags", noDedup(counters(ctr("a", 0))), errSnapCorrupt},
		{"unknown flag", noDedup(counters(ctr("a", ctrValue|0x08, 2))), errSnapCorrupt},
		{"zero value flagged", noDedup(counters(ctr("a", ctrValue, 0))), errSnapCorrupt},
		{"zero expiry", noDedup(counters(ctr("a", ctrExpiry, 0))), errSnapCorrupt},
		{"negative expiry", noDedup(counters(ctr("a", ctrExpiry, 1))), errSnapCorrupt},
		{"empty actor set", noDedup(counters(ctr("a", ctrActors, 0))), errSnapCorrupt},
		{"empty actor", noDedup(counters(ctr("a", ctrActors, 1, 0))), errSnapCorrupt},
		{"actor too long", noDedup(counters(ctr("a", ctrActors, 1, MaxActorLen+1))), errSnapCorrupt},
		{"actors out of order", noDedup(counters(ctr("a", ctrActors, 2, 1, 'y', 1, 'x'))), errSnapCorrupt},
		{"duplicate actor", noDedup(counters(ctr("a", ctrActors, 2, 1, 'x', 1, 'x'))), errSnapCorrupt},
		{"absurd actor count", counters(ctr("a", ctrActors, 0xff, 0xff, 0xff, 0xff, 0x0f)), errSnapTruncated},
		{"duplicate counter", noDedup(counters(ctr("a", ctrValue, 2), ctr("a", ctrValue, 4))), errSnapCorrupt},
		{"duplicate counter apart", noDedup(counters(ctr("a", ctrValue, 2), ctr("b", ctrValue, 2), ctr("a", ctrValue, 4))), errSnapCorrupt},
		{"record without key", dedup(rec(add("a", 1), 2, 2, 0, byte(OK), 0)), errSnapCorrupt},
		{"record with invalid op", dedup(rec(Op{Kind: OpActorAdd, Name: "a", Key: "k"}, 2, 2, 0, byte(OK), 0)), errSnapCorrupt},
		{"record op trailing", dedup(append(appendString(nil, string(append(appendOpV2(nil, &op), 0))), 2, 2, 0, 0, 0)), errSnapCorrupt},
		{"record op non-canonical", dedup(append(appendString(nil, "\x01\x01a\x03\x00\x01k"), 2, 2, 0, 0, 0)), errSnapCorrupt},
		{"record op too long", dedup(append(binary.AppendUvarint(nil, maxOpLenV2+1), make([]byte, maxOpLenV2+1)...)), errSnapCorrupt},
		{"record reuse code", dedup(rec(op, 2, 2, 0, byte(ErrKeyReused), 0)), errSnapCorrupt},
		{"record invalid code", dedup(rec(op, 2, 2, 0, byte(ErrInvalidOp), 0)), errSnapCorrupt},
		{"record out of bounds unbounded", dedup(rec(op, 2, 2, 0, byte(ErrOutOfBounds), 0)), errSnapCorrupt},
		{"record changed on add", dedup(rec(op, 2, 2, 0, byte(OK), 1)), errSnapCorrupt},
		{"record changed 2", dedup(rec(withKey(like("a", "u"), "k"), 2, 2, 0, byte(OK), 2)), errSnapCorrupt},
		{"record negative expiry", dedup(rec(op, 2, 2, 1, byte(OK), 0)), errSnapCorrupt},
		{"duplicate key", dedup(rec(op, 2, 2, 0, 0, 0), rec(op, 2, 2, 0, 0, 0)), errSnapCorrupt},
		{"flipped actor byte, out of order", func() []byte {
			b := bytes.Clone(goodBytes)
			b[bytes.Index(b, []byte("user-123"))+7] ^= 1 // "user-122" twice
			return b
		}(), errSnapCorrupt},
		{"flipped actor byte", func() []byte {
			b := bytes.Clone(goodBytes)
			b[bytes.Index(b, []byte("user-299"))] ^= 2 // "wser-299": still in order
			return b
		}(), errSnapChecksum},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := engagedMachine(t)
			before := snapBytes(t, m.Snapshot())
			err := m.Restore(bytes.NewReader(tt.in))
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Restore err = %v, want %v", err, tt.want)
			}
			if after := snapBytes(t, m.Snapshot()); err != nil && !bytes.Equal(before, after) {
				t.Fatal("failed Restore changed the state")
			}
		})
	}
	// A record with Changed on an actor op, and an out-of-bounds answer on a
	// bounded op, are fine.
	for _, b := range [][]byte{
		dedup(rec(withKey(like("a", "u"), "k"), 2, 2, 0, byte(OK), 1)),
		dedup(rec(withKey(atMost("a", 1, 0), "k"), 2, 0, 0, byte(ErrOutOfBounds), 0)),
	} {
		if err := New(Config{}).Restore(bytes.NewReader(b)); err != nil {
			t.Fatalf("valid hand-built snapshot rejected: %v", err)
		}
	}
}

func TestRestoreRejectsEveryTruncationV2(t *testing.T) {
	good := snapBytes(t, engagedMachine(t).Snapshot())
	m := New(Config{})
	m.Apply(&Entry{Time: 3, Ops: []Op{like("keep", "a")}})
	before := stateOf(m)
	for n := range len(good) {
		if err := m.Restore(bytes.NewReader(good[:n])); !errors.Is(err, errSnapTruncated) {
			t.Fatalf("prefix of %d/%d bytes: err = %v", n, len(good), err)
		}
	}
	if !reflect.DeepEqual(stateOf(m), before) {
		t.Fatal("failed Restores changed the state")
	}
}

func TestRestoreRebuildsHeap(t *testing.T) {
	m := New(Config{})
	var ops []Op
	for i := range 100 {
		ops = append(ops, withTTL(add(fmt.Sprint("c", i), 1), int64(1000-i*7%500)))
	}
	m.Apply(&Entry{Time: sec, Ops: ops})
	r := restored(t, Config{}, snapBytes(t, m.Snapshot()))
	stateOf(r) // checks the heap holds every expiry, in heap order
	for r.NextExpiry() != 0 {
		next := r.NextExpiry()
		if next != m.NextExpiry() {
			t.Fatalf("NextExpiry %d, original %d", next, m.NextExpiry())
		}
		r.Apply(&Entry{Time: next})
		m.Apply(&Entry{Time: next})
		if !reflect.DeepEqual(stateOf(r), stateOf(m)) {
			t.Fatalf("at %d: states differ", next)
		}
	}
	if m.Counters() != 0 {
		t.Fatal("counters left")
	}
}

package fsm

import (
	"bytes"
	"encoding/hex"
	"math"
	"reflect"
	"testing"
)

// Golden bytes written by the version 1 encoder and snapshot writer, captured
// before version 2 existed. Entries and snapshots like these sit in users'
// raft logs and snapshot stores, so they must keep decoding, to the same
// state, forever.

func goldenV1Entries() []Entry {
	return []Entry{
		{},
		{Time: -5},
		{Time: math.MaxInt64, Ops: []Op{{Kind: OpAdd, Name: "a", Delta: 1}}},
		{Time: math.MinInt64, Ops: []Op{{Kind: OpAdd, Name: "a", Delta: -1, Key: "k"}}},
		{Time: 1_700_000_000_000_000_000, Ops: []Op{
			{Kind: OpAdd, Name: "hits", Delta: 1, Key: "req-1"},
			{Kind: OpAdd, Name: "hits", Delta: -3},
			{Kind: OpAdd, Name: "min", Delta: math.MinInt64, Key: "req-2"},
			{Kind: OpAdd, Name: "max", Delta: math.MaxInt64},
			{Kind: OpAdd, Name: "zero", Delta: 0},
			{Kind: OpAdd, Name: "\x00\xff unicode ☃", Delta: 1 << 40, Key: "\x00"},
		}},
	}
}

var goldenV1EntryHex = []string{
	"01010000",
	"01010900",
	"0101feffffffffffffffff01010101610200",
	"0101ffffffffffffffffff010101016101016b",
	"01018080d0e2c6bfce972f0601046869747302057265712d31010468697473050001036d696effffffffffffffffff01057265712d3201036d6178feffffffffffffffff010001047a65726f0000010e00ff20756e69636f646520e298838080808080400100",
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEntryV1Golden(t *testing.T) {
	for i, e := range goldenV1Entries() {
		b := mustHex(t, goldenV1EntryHex[i])
		got, err := DecodeEntry(b)
		if err != nil {
			t.Fatalf("golden %d: %v", i, err)
		}
		if !sameEntry(got, e) {
			t.Fatalf("golden %d decodes to\n %+v\nwant %+v", i, got, e)
		}
		// These entries use no new feature, so today's encoder still
		// writes them as version 1, byte for byte.
		if b2 := AppendEntry(nil, &got); !bytes.Equal(b2, b) {
			t.Fatalf("golden %d re-encodes as\n % x\nwant % x", i, b2, b)
		}
	}
}

// goldenV1SnapshotEntries built the state of goldenV1SnapshotHex, on a
// Machine with the default Config.
func goldenV1SnapshotEntries() []Entry {
	return []Entry{
		{Time: 1 * sec, Ops: []Op{add("a", 5), keyed("b", -3, "k1"), add("max", math.MaxInt64), keyed("max", 1, "ovf")}},
		{Time: 2 * sec, Ops: []Op{add("min", math.MinInt64), keyed("a", 2, "k2"), add("gone", 1), add("gone", -1), keyed("zero", 0, "k3")}},
	}
}

const goldenV1SnapshotHex = "54414c4c5946534d0180d0acf30e0401610e016205036d6178feffffffffffffffff01036d696effffffffffffffffff0104026b310101620580a8d6b9070500036f766601036d61780280a8d6b907feffffffffffffffff0101026b320101610480d0acf30e0e00026b3301047a65726f0080d0acf30e0000b376fc79"

func TestSnapshotV1Golden(t *testing.T) {
	b := mustHex(t, goldenV1SnapshotHex)
	r := restored(t, Config{}, b)

	// The same state as today's Machine reaches applying the same entries.
	m := New(Config{})
	for _, e := range goldenV1SnapshotEntries() {
		m.Apply(&e)
	}
	if !reflect.DeepEqual(stateOf(r), stateOf(m)) {
		t.Fatalf("golden v1 snapshot restores to\n %+v\nwant %+v", stateOf(r), stateOf(m))
	}
	// It remembers keys, so it is written as version 4 now, which holds
	// the same state.
	b2 := snapBytes(t, r.Snapshot())
	if b2[len(snapMagic)] != snapV4 {
		t.Fatalf("restored golden snapshot writes version %d", b2[len(snapMagic)])
	}
	if r2 := restored(t, Config{}, b2); !reflect.DeepEqual(stateOf(r2), stateOf(m)) {
		t.Fatalf("rewritten golden snapshot restores to\n %+v\nwant %+v", stateOf(r2), stateOf(m))
	}
	// Retries of the remembered keys get their first answers, reuse is caught.
	got := r.Apply(&Entry{Time: 3 * sec, Ops: []Op{
		keyed("b", -3, "k1"), keyed("max", 1, "ovf"), keyed("a", 2, "k2"), keyed("zero", 0, "k3"),
		keyed("a", 3, "k2"), add("a", 1),
	}})
	want := []Result{ok(-3), {Value: math.MaxInt64, Code: ErrOverflow}, ok(7), ok(0), {Value: 7, Code: ErrKeyReused}, ok(8)}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after restoring the golden snapshot: %v, want %v", got, want)
	}
}

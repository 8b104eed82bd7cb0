package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func snapBytes(t testing.TB, s *Snapshot) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := s.WriteTo(&buf)
	if err != nil {
		t.Fatalf("WriteTo: %v", err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d bytes", n, buf.Len())
	}
	return buf.Bytes()
}

func restored(t testing.TB, cfg Config, b []byte) *Machine {
	t.Helper()
	m := New(cfg)
	if err := m.Restore(bytes.NewReader(b)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	return m
}

// busyMachine holds every kind of state: extreme values, long names and
// keys, an overflow result, and dedup records that run over two chunks, the
// front of the first one expired.
func busyMachine(t testing.TB) *Machine {
	m := fillBusy(chunkRecs - 20)
	if d := m.dedup; len(d.chunks) != 2 || d.head == d.first {
		t.Fatalf("records [%d, %d) in %d chunks from %d", d.head, d.tail, len(d.chunks), d.first)
	}
	return m
}

// fillBusy builds busyMachine's state with fillers keyed adds at the start
// (the golden streams in testdata were written with 40).
func fillBusy(fillers int) *Machine {
	m := New(Config{DedupTTL: 10 * time.Second})
	for i := range fillers {
		m.Apply(&Entry{Time: sec, Ops: []Op{keyed("filler", 1, fmt.Sprint("f", i))}})
	}
	m.Apply(&Entry{Time: 5 * sec, Ops: []Op{
		add("max", math.MaxInt64),
		add("min", math.MinInt64),
		keyed(strings.Repeat("n", MaxNameLen), -7, strings.Repeat("k", MaxKeyLen)),
		keyed("max", 1, "overflowed"),
		keyed("gone", 1, "z"), keyed("gone", -1, "z2"),
	}})
	m.Apply(&Entry{Time: 11 * sec}) // expires the fillers
	for i := range 30 {
		m.Apply(&Entry{Time: 12 * sec, Ops: []Op{keyed("c", int64(i), fmt.Sprint("late", i))}})
	}
	return m
}

func TestSnapshotRoundTrip(t *testing.T) {
	cfg := Config{DedupTTL: 10 * time.Second}
	for _, tc := range []struct {
		name string
		m    *Machine
	}{
		{"empty", New(cfg)},
		{"busy", busyMachine(t)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tc.m
			b := snapBytes(t, m.Snapshot())
			r := restored(t, cfg, b)
			if !reflect.DeepEqual(stateOf(r), stateOf(m)) {
				t.Fatalf("restored state differs\n got %+v\nwant %+v", stateOf(r), stateOf(m))
			}
			if r.Counters() != m.Counters() || r.DedupKeys() != m.DedupKeys() || r.LastTime() != m.LastTime() {
				t.Fatal("restored accessors differ")
			}
			if b2 := snapBytes(t, r.Snapshot()); !bytes.Equal(b, b2) {
				t.Fatal("snapshot of the restored machine differs")
			}
		})
	}
}

func TestRestoredMachineBehavesTheSame(t *testing.T) {
	cfg := Config{DedupTTL: 10 * time.Second}
	m := busyMachine(t)
	r := restored(t, cfg, snapBytes(t, m.Snapshot()))
	entries := []Entry{
		// Retries still dedup after restore (including the overflow answer),
		// and reuse is still caught.
		{Time: 13 * sec, Ops: []Op{
			keyed(strings.Repeat("n", MaxNameLen), -7, strings.Repeat("k", MaxKeyLen)),
			keyed("max", 1, "overflowed"),
			keyed("c", 3, "late3"),
			keyed("c", 4, "late3"),
			keyed("gone", -1, "z2"),
			add("c", 1),
		}},
		// Expiry still works after restore: the keys from 5s go at 15s...
		{Time: 15 * sec, Ops: []Op{keyed("max", -1, "overflowed")}},
		// ...and those from 12s at 22s.
		{Time: 22 * sec, Ops: []Op{keyed("c", 3, "late3")}},
	}
	want := [][]Result{
		{ok(-7), {Value: math.MaxInt64, Code: ErrOverflow}, ok(6), {Value: 435, Code: ErrKeyReused}, ok(0), ok(436)},
		{ok(math.MaxInt64 - 1)},
		{ok(439)},
	}
	for i := range entries {
		got, gotR := m.Apply(&entries[i]), r.Apply(&entries[i])
		if !reflect.DeepEqual(got, want[i]) {
			t.Fatalf("entry %d on original: got %v, want %v", i, got, want[i])
		}
		if !reflect.DeepEqual(gotR, want[i]) {
			t.Fatalf("entry %d on restored: got %v, want %v", i, gotR, want[i])
		}
		if !reflect.DeepEqual(stateOf(r), stateOf(m)) {
			t.Fatalf("after entry %d: states differ", i)
		}
	}
	if m.DedupKeys() != 2 {
		t.Fatalf("DedupKeys = %d, want 2", m.DedupKeys())
	}
}

func TestSnapshotIsolation(t *testing.T) {
	m := busyMachine(t)
	snap := m.Snapshot()
	want := snapBytes(t, m.Snapshot())
	// Change every part of the state: update, delete and create counters,
	// add keys (growing the ring) and expire keys.
	for i := range 200 {
		m.Apply(&Entry{Time: 13*sec + int64(i), Ops: []Op{
			add("c", 1), add("max", -1), add("min", -1), add(fmt.Sprint("new", i), 1),
			keyed("x", 1, fmt.Sprint("key", i)),
		}})
	}
	m.Apply(&Entry{Time: 30 * sec})
	if got := snapBytes(t, snap); !bytes.Equal(got, want) {
		t.Fatal("applying after Snapshot changed what it writes")
	}
}

func TestSnapshotWriteConcurrentWithApply(t *testing.T) {
	// Run with -race: WriteTo must not read anything Apply writes.
	m := busyMachine(t)
	snap := m.Snapshot()
	want := snapBytes(t, snap)
	var wg sync.WaitGroup
	got := make([][]byte, 4)
	for i := range got {
		wg.Go(func() { got[i] = snapBytes(t, snap) })
	}
	for i := range 500 {
		m.Apply(&Entry{Time: 13*sec + int64(i)*int64(50*time.Millisecond), Ops: []Op{
			add("c", 1), add("max", -1), keyed("y", 1, fmt.Sprint("key", i)),
		}})
	}
	wg.Wait()
	for _, g := range got {
		if !bytes.Equal(g, want) {
			t.Fatal("concurrent WriteTo wrote something else")
		}
	}
}

func TestSnapshotBytesAreDeterministic(t *testing.T) {
	// Same state reached in a different order: same bytes (counters sorted).
	a, b := New(Config{}), New(Config{})
	a.Apply(&Entry{Time: 1, Ops: []Op{add("x", 1), add("y", 2), add("z", 3)}})
	b.Apply(&Entry{Time: 1, Ops: []Op{add("z", 3), add("x", 1), add("y", 2)}})
	if !bytes.Equal(snapBytes(t, a.Snapshot()), snapBytes(t, b.Snapshot())) {
		t.Fatal("equal states wrote different snapshots")
	}
}

// failWriter accepts n bytes, then fails.
type failWriter struct{ n int }

var errDiskFull = errors.New("disk full")

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.n {
		k := w.n
		w.n = 0
		return k, errDiskFull
	}
	w.n -= len(p)
	return len(p), nil
}

func TestSnapshotWriteError(t *testing.T) {
	m := busyMachine(t)
	size := len(snapBytes(t, m.Snapshot()))
	for _, limit := range []int{0, 10, size - 1} {
		n, err := m.Snapshot().WriteTo(&failWriter{n: limit})
		if !errors.Is(err, errDiskFull) {
			t.Fatalf("limit %d: err = %v", limit, err)
		}
		if n != int64(limit) {
			t.Fatalf("limit %d: WriteTo reported %d bytes", limit, n)
		}
	}
}

// withCRC appends the checksum to a hand-built snapshot body.
func withCRC(body []byte) []byte {
	return binary.LittleEndian.AppendUint32(body, crc32.Checksum(body, castagnoli))
}

// header starts a hand-built snapshot body: magic, version, lastTime.
func header() []byte {
	return binary.AppendVarint(append([]byte(snapMagic), snapV1), 7)
}

func TestSnapshotLayout(t *testing.T) {
	// Pin the documented layout: old snapshots must keep restoring, to the
	// state applying their entries reaches today.
	m := New(Config{})
	m.Apply(&Entry{Time: 7, Ops: []Op{add("b", -1), keyed("a", 2, "k")}})
	body := header()
	body = append(body, 2, 1, 'a', 4, 1, 'b', 1)                     // counters, sorted
	body = append(body, 1, 1, 'k', byte(OpAdd), 1, 'a', 4, 14, 4, 0) // dedup
	r := restored(t, Config{}, withCRC(body))
	if !reflect.DeepEqual(stateOf(r), stateOf(m)) {
		t.Fatalf("version 1 layout restores to\n %+v\nwant %+v", stateOf(r), stateOf(m))
	}
	// Without the key, today's writer still writes it byte for byte.
	m2 := New(Config{})
	m2.Apply(&Entry{Time: 7, Ops: []Op{add("b", -1), add("a", 2)}})
	body = header()
	body = append(body, 2, 1, 'a', 4, 1, 'b', 1, 0)
	if got := snapBytes(t, m2.Snapshot()); !bytes.Equal(got, withCRC(body)) {
		t.Fatalf("got  % x\nwant % x", got, withCRC(body))
	}
}

// errReader fails after yielding its prefix.
type errReader struct {
	r   io.Reader
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err == io.EOF {
		return n, e.err
	}
	return n, err
}

func TestRestoreRejects(t *testing.T) {
	good := snapBytes(t, busyMachine(t).Snapshot())
	counters := func(recs ...[]byte) []byte {
		b := binary.AppendUvarint(header(), uint64(len(recs)))
		for _, r := range recs {
			b = append(b, r...)
		}
		return b
	}
	ctr := func(name string, v int64) []byte { return binary.AppendVarint(appendString(nil, name), v) }
	rec := func(key string, kind OpKind, name string, code Code) []byte {
		b := appendString(nil, key)
		b = append(b, byte(kind))
		b = appendString(b, name)
		b = append(b, 2, 2, 2) // delta, time, value
		return append(b, byte(code))
	}
	dedup := func(recs ...[]byte) []byte {
		b := binary.AppendUvarint(counters(), uint64(len(recs)))
		for _, r := range recs {
			b = append(b, r...)
		}
		return b
	}
	flip := func(i int) []byte {
		b := bytes.Clone(good)
		b[i] ^= 0x10
		return b
	}
	ioErr := errors.New("read failed")
	tests := []struct {
		name string
		in   io.Reader
		want error
	}{
		{"empty", bytes.NewReader(nil), errSnapTruncated},
		{"bad magic", bytes.NewReader(append([]byte("TALLYFSN"), good[8:]...)), errSnapMagic},
		{"entry, not snapshot", bytes.NewReader(AppendEntry(nil, &Entry{Time: 1})), errSnapTruncated},
		{"garbage", bytes.NewReader(bytes.Repeat([]byte("garbage!"), 100)), errSnapMagic},
		{"bad version", bytes.NewReader(append(append([]byte(snapMagic), 5), good[9:]...)), errSnapVersion},
		{"version zero", bytes.NewReader(append(append([]byte(snapMagic), 0), good[9:]...)), errSnapVersion},
		{"trailing byte", bytes.NewReader(append(bytes.Clone(good), 0)), errSnapTrailing},
		{"flipped checksum", bytes.NewReader(flip(len(good) - 1)), errSnapChecksum},
		{"flipped last time", bytes.NewReader(flip(9)), errSnapChecksum},
		{"flipped name byte", bytes.NewReader(flip(bytes.Index(good, []byte("filler")))), errSnapChecksum},
		{"read error", &errReader{bytes.NewReader(good[:100]), ioErr}, ioErr},
		{"read error at end", &errReader{bytes.NewReader(good), ioErr}, ioErr},
		// Huge counts with nothing behind them: must fail without allocating for them.
		{"absurd counter count", bytes.NewReader(binary.AppendUvarint(header(), math.MaxUint64)), errSnapTruncated},
		{"absurd dedup count", bytes.NewReader(binary.AppendUvarint(counters(), math.MaxUint64)), errSnapTruncated},
		{"varint too long", bytes.NewReader(withCRC(append(header(), bytes.Repeat([]byte{0xff}, 11)...))), errSnapCorrupt},
		{"counter name empty", bytes.NewReader(withCRC(append(counters(ctr("", 1)), 0))), errSnapCorrupt},
		{"counter name too long", bytes.NewReader(withCRC(append(counters(ctr(strings.Repeat("n", MaxNameLen+1), 1)), 0))), errSnapCorrupt},
		{"zero counter", bytes.NewReader(withCRC(append(counters(ctr("a", 0)), 0))), errSnapCorrupt},
		{"duplicate counter", bytes.NewReader(withCRC(append(counters(ctr("a", 1), ctr("a", 2)), 0))), errSnapCorrupt},
		{"empty key", bytes.NewReader(withCRC(dedup(rec("", OpAdd, "a", OK)))), errSnapCorrupt},
		{"key too long", bytes.NewReader(withCRC(dedup(rec(strings.Repeat("k", MaxKeyLen+1), OpAdd, "a", OK)))), errSnapCorrupt},
		{"duplicate key", bytes.NewReader(withCRC(dedup(rec("k", OpAdd, "a", OK), rec("k", OpAdd, "b", OK)))), errSnapCorrupt},
		{"unknown kind", bytes.NewReader(withCRC(dedup(rec("k", 7, "a", OK)))), errSnapCorrupt},
		{"record name empty", bytes.NewReader(withCRC(dedup(rec("k", OpAdd, "", OK)))), errSnapCorrupt},
		{"remembered reuse", bytes.NewReader(withCRC(dedup(rec("k", OpAdd, "a", ErrKeyReused)))), errSnapCorrupt},
		{"missing checksum", bytes.NewReader(dedup(rec("k", OpAdd, "a", OK))), errSnapTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := busyMachine(t)
			before := snapBytes(t, m.Snapshot())
			err := m.Restore(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Restore err = %v, want %v", err, tt.want)
			}
			if after := snapBytes(t, m.Snapshot()); !bytes.Equal(before, after) {
				t.Fatal("failed Restore changed the state")
			}
		})
	}
	// The hand-built records above are valid apart from their one defect.
	if err := New(Config{}).Restore(bytes.NewReader(withCRC(dedup(rec("k", OpAdd, "a", ErrOverflow))))); err != nil {
		t.Fatalf("valid hand-built snapshot rejected: %v", err)
	}
}

func TestRestoreRejectsEveryTruncation(t *testing.T) {
	good := snapBytes(t, busyMachine(t).Snapshot())
	m := New(Config{})
	m.Apply(&Entry{Time: 3, Ops: []Op{add("keep", 5), keyed("keep", 1, "k")}})
	before := stateOf(m)
	for n := range len(good) {
		err := m.Restore(bytes.NewReader(good[:n]))
		if !errors.Is(err, errSnapTruncated) {
			t.Fatalf("prefix of %d/%d bytes: err = %v", n, len(good), err)
		}
	}
	if !reflect.DeepEqual(stateOf(m), before) {
		t.Fatal("failed Restores changed the state")
	}
	// The machine still works, keys and all.
	if got := m.Apply(&Entry{Time: 4, Ops: []Op{keyed("keep", 1, "k")}}); got[0] != ok(6) {
		t.Fatalf("after failed restores: %v", got)
	}
}

func TestRestoreReplacesEverything(t *testing.T) {
	src := New(Config{})
	src.Apply(&Entry{Time: 10, Ops: []Op{add("a", 1), keyed("b", 2, "kb")}})
	dst := busyMachine(t)
	if err := dst.Restore(bytes.NewReader(snapBytes(t, src.Snapshot()))); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(stateOf(dst), stateOf(src)) {
		t.Fatalf("got %+v, want %+v", stateOf(dst), stateOf(src))
	}
	// The TTL is the restoring machine's own (10s), not part of the state.
	dst.Apply(&Entry{Time: 10 + 10*sec})
	if dst.DedupKeys() != 0 {
		t.Fatal("restored machine lost its own TTL")
	}
}

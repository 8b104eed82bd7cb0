package fsm

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

// sampleEntries covers the corners of the encoding; it also seeds the fuzzers.
func sampleEntries() []Entry {
	return []Entry{
		{},
		{Time: 1, Ops: []Op{}},
		{Time: -5},
		{Time: math.MaxInt64, Ops: []Op{{Kind: OpAdd, Name: "a", Delta: 1}}},
		{Time: math.MinInt64, Ops: []Op{{Kind: OpAdd, Name: "a", Delta: -1, Key: "k"}}},
		{Time: 1_700_000_000_000_000_000, Ops: []Op{
			{Kind: OpAdd, Name: "hits", Delta: 1, Key: "req-1"},
			{Kind: OpAdd, Name: "hits", Delta: -3},
			{Kind: OpAdd, Name: "min", Delta: math.MinInt64, Key: "req-2"},
			{Kind: OpAdd, Name: "max", Delta: math.MaxInt64},
			{Kind: OpAdd, Name: "zero", Delta: 0},
			{Kind: OpAdd, Name: strings.Repeat("n", MaxNameLen), Delta: 7, Key: strings.Repeat("k", MaxKeyLen)},
			{Kind: OpAdd, Name: "\x00\xff unicode ☃", Delta: 1 << 40, Key: "\x00"},
		}},
	}
}

// sameEntry compares entries treating nil and empty Ops alike, since the
// encoding cannot tell them apart.
func sameEntry(a, b Entry) bool {
	if a.Time != b.Time || len(a.Ops) != len(b.Ops) {
		return false
	}
	for i := range a.Ops {
		if a.Ops[i] != b.Ops[i] {
			return false
		}
	}
	return true
}

func TestEntryRoundTrip(t *testing.T) {
	for i, e := range sampleEntries() {
		b := AppendEntry(nil, &e)
		got, err := DecodeEntry(b)
		if err != nil {
			t.Fatalf("entry %d: decode: %v", i, err)
		}
		if !sameEntry(got, e) {
			t.Fatalf("entry %d: round trip\n got %+v\nwant %+v", i, got, e)
		}
		// Canonical: re-encoding reproduces the same bytes.
		if b2 := AppendEntry(nil, &got); !bytes.Equal(b, b2) {
			t.Fatalf("entry %d: re-encoding differs", i)
		}
	}
}

func TestAppendEntryAppends(t *testing.T) {
	e := Entry{Time: 3, Ops: []Op{{Kind: OpAdd, Name: "x", Delta: 2}}}
	prefix := []byte("prefix")
	b := AppendEntry(append([]byte(nil), prefix...), &e)
	if !bytes.HasPrefix(b, prefix) {
		t.Fatalf("prefix clobbered: %q", b)
	}
	got, err := DecodeEntry(b[len(prefix):])
	if err != nil || !sameEntry(got, e) {
		t.Fatalf("got %+v, %v", got, err)
	}
}

func TestEncodingLayout(t *testing.T) {
	// Pin the documented layout so that a change to it is deliberate: other
	// replicas (and old logs) must keep decoding.
	e := Entry{Time: -1, Ops: []Op{{Kind: OpAdd, Name: "ab", Delta: -2, Key: "k"}}}
	want := []byte{1, 1, 0x01, 1, 1, 2, 'a', 'b', 0x03, 1, 'k'}
	if got := AppendEntry(nil, &e); !bytes.Equal(got, want) {
		t.Fatalf("got % x, want % x", got, want)
	}
}

func TestDecodeEntryRejects(t *testing.T) {
	enc := func(e Entry) []byte { return AppendEntry(nil, &e) }
	op := func(name, key string) Entry {
		return Entry{Time: 1, Ops: []Op{{Kind: OpAdd, Name: name, Delta: 1, Key: key}}}
	}
	valid := enc(op("a", "k"))
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, errTruncated},
		{"version only", []byte{1}, errTruncated},
		{"unknown version", append([]byte{2}, valid[1:]...), errEntryVersion},
		{"version zero", append([]byte{0}, valid[1:]...), errEntryVersion},
		{"unknown type", append([]byte{1, 2}, valid[2:]...), errEntryType},
		{"no time", []byte{1, 1}, errTruncated},
		{"no count", []byte{1, 1, 0}, errTruncated},
		{"truncated op", valid[:len(valid)-1], errTruncated},
		{"trailing byte", append(append([]byte(nil), valid...), 0), errTrailing},
		{"two entries", append(append([]byte(nil), valid...), valid...), errTrailing},
		{"empty name", enc(op("", "k")), errEmptyName},
		{"name too long", enc(op(strings.Repeat("n", MaxNameLen+1), "")), errNameTooLong},
		{"key too long", enc(op("a", strings.Repeat("k", MaxKeyLen+1))), errKeyTooLong},
		{"unknown kind 0", enc(Entry{Ops: []Op{{Kind: 0, Name: "a"}}}), errUnknownKind},
		{"unknown kind 2", enc(Entry{Ops: []Op{{Kind: 2, Name: "a"}}}), errUnknownKind},
		// A count of 2^63 in a 13-byte input: refused before allocating.
		{"absurd count", []byte{1, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, errOpCount},
		// A count of 2 with only one op's worth of bytes.
		{"count over length", func() []byte { b := enc(op("a", "")); b[3] = 2; return b }(), errOpCount},
		{"count one short", func() []byte {
			b := enc(Entry{Ops: []Op{{Kind: OpAdd, Name: "a"}, {Kind: OpAdd, Name: "b"}}})
			b[3] = 1
			return b
		}(), errTrailing},
		{"varint over 64 bits", []byte{1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0}, errVarint},
		{"non-minimal varint", []byte{1, 1, 0x80, 0x00, 0}, errVarint},
		{"name length huge", []byte{1, 1, 0, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0}, errNameTooLong},
		{"name past end", []byte{1, 1, 0, 1, 1, 9, 'a', 0, 0, 0}, errTruncated},
		{"key past end", []byte{1, 1, 0, 1, 1, 1, 'a', 0, 9, 0}, errTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := DecodeEntry(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("DecodeEntry(% x) = %+v, %v; want error %v", tt.in, e, err, tt.want)
			}
			if e.Ops != nil || e.Time != 0 {
				t.Fatalf("rejected input returned a non-zero entry %+v", e)
			}
		})
	}
}

func TestDecodeEntryStringsDoNotAlias(t *testing.T) {
	// The Machine keeps decoded names and keys, so they must not point into
	// the caller's buffer (which raft may reuse).
	e := Entry{Ops: []Op{{Kind: OpAdd, Name: "name", Delta: 1, Key: "key"}}}
	b := AppendEntry(nil, &e)
	got, err := DecodeEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'X'
	}
	if got.Ops[0].Name != "name" || got.Ops[0].Key != "key" {
		t.Fatalf("decoded strings changed with the input buffer: %+v", got.Ops[0])
	}
}

func TestOpValidate(t *testing.T) {
	tests := []struct {
		op   Op
		want error
	}{
		{Op{Kind: OpAdd, Name: "a"}, nil},
		{Op{Kind: OpAdd, Name: strings.Repeat("a", MaxNameLen), Key: strings.Repeat("k", MaxKeyLen)}, nil},
		{Op{Kind: 0, Name: "a"}, errUnknownKind},
		{Op{Kind: OpAdd}, errEmptyName},
		{Op{Kind: OpAdd, Name: strings.Repeat("a", MaxNameLen+1)}, errNameTooLong},
		{Op{Kind: OpAdd, Name: "a", Key: strings.Repeat("k", MaxKeyLen+1)}, errKeyTooLong},
	}
	for _, tt := range tests {
		if err := tt.op.Validate(); err != tt.want {
			t.Errorf("Validate(%.20q) = %v, want %v", tt.op.Name, err, tt.want)
		}
	}
}

func FuzzDecodeEntry(f *testing.F) {
	for _, e := range sampleEntries() {
		f.Add(AppendEntry(nil, &e))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeEntry(b)
		if err != nil {
			return
		}
		for _, op := range e.Ops {
			if err := op.Validate(); err != nil {
				t.Fatalf("accepted an invalid op %+v: %v", op, err)
			}
		}
		b2 := AppendEntry(nil, &e)
		e2, err := DecodeEntry(b2)
		if err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if !sameEntry(e, e2) {
			t.Fatalf("re-encoding decodes differently\n got %+v\nwant %+v", e2, e)
		}
		// The encoding is canonical, so the bytes must match too.
		if !bytes.Equal(b, b2) {
			t.Fatalf("accepted non-canonical input\n in % x\nout % x", b, b2)
		}
	})
}

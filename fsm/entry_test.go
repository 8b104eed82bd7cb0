package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"slices"
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
		// Version 2: actor ops, bounds and TTLs, alone and mixed with plain adds.
		{Time: 1_700_000_000_000_000_000, Ops: []Op{
			{Kind: OpActorAdd, Name: "post/1/likes", Actor: "user-001", Key: "like-1"},
			{Kind: OpActorRemove, Name: "post/1/likes", Actor: strings.Repeat("u", MaxActorLen)},
			{Kind: OpAdd, Name: "stock", Delta: -1, HasMin: true, Key: "order-9"},
			{Kind: OpAdd, Name: "rate/ip", Delta: 1, HasMax: true, Max: 100, TTL: 1000},
			{Kind: OpAdd, Name: "band", Delta: 3, HasMin: true, Min: -5, HasMax: true, Max: 5},
			{Kind: OpAdd, Name: "edge", Delta: math.MinInt64, HasMin: true, Min: math.MinInt64, HasMax: true, Max: math.MaxInt64, TTL: MaxTTL},
			{Kind: OpAdd, Name: "plain", Delta: 1},
		}},
		{Time: 9, Ops: []Op{{Kind: OpActorAdd, Name: "a", Actor: "\x00"}}},
		{Time: 10, Ops: []Op{{Kind: OpAdd, Name: "a", TTL: 1}}},
	}
}

// encVersion returns the version AppendEntry chose for e.
func encVersion(e Entry) byte { return AppendEntry(nil, &e)[0] }

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
		{"unknown version", append([]byte{3}, valid[1:]...), errEntryVersion},
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
		{"unknown kind 10", enc(Entry{Ops: []Op{{Kind: 10, Name: "a"}}}), errUnknownKind},
		{"v1 actor kind", []byte{1, 1, 0, 1, 2, 1, 'a', 0, 0}, errUnknownKind},
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
		{Op{Kind: OpAdd, Name: "a", Delta: -1, HasMin: true, HasMax: true}, nil},
		{Op{Kind: OpAdd, Name: "a", HasMin: true, Min: 3, HasMax: true, Max: 3}, nil},
		{Op{Kind: OpAdd, Name: "a", HasMin: true, Min: math.MinInt64, HasMax: true, Max: math.MaxInt64}, nil},
		{Op{Kind: OpAdd, Name: "a", HasMin: true, Min: 4, HasMax: true, Max: 3}, errBounds},
		{Op{Kind: OpAdd, Name: "a", HasMin: true, Min: 0, HasMax: true, Max: -1}, errBounds},
		{Op{Kind: OpAdd, Name: "a", HasMin: true, Min: 4, Max: 3}, errBoundUnset},
		{Op{Kind: OpAdd, Name: "a", Min: 1}, errBoundUnset},
		{Op{Kind: OpAdd, Name: "a", Max: -1, HasMin: true}, errBoundUnset},
		{Op{Kind: OpAdd, Name: "a", TTL: 1}, nil},
		{Op{Kind: OpAdd, Name: "a", TTL: MaxTTL}, nil},
		{Op{Kind: OpAdd, Name: "a", TTL: MaxTTL + 1}, errTTL},
		{Op{Kind: OpAdd, Name: "a", TTL: -1}, errTTL},
		{Op{Kind: OpAdd, Name: "a", Actor: "u"}, errActorOnAdd},
		{Op{Kind: OpActorAdd, Name: "a", Actor: "u", Key: "k"}, nil},
		{Op{Kind: OpActorRemove, Name: "a", Actor: strings.Repeat("u", MaxActorLen)}, nil},
		{Op{Kind: OpActorAdd, Name: "a"}, errEmptyActor},
		{Op{Kind: OpActorRemove, Name: "a", Actor: strings.Repeat("u", MaxActorLen+1)}, errActorTooLong},
		{Op{Kind: OpActorAdd, Actor: "u"}, errEmptyName},
		{Op{Kind: OpActorAdd, Name: "a", Actor: "u", Delta: 1}, errAddFieldOnAct},
		{Op{Kind: OpActorAdd, Name: "a", Actor: "u", HasMin: true}, errAddFieldOnAct},
		{Op{Kind: OpActorAdd, Name: "a", Actor: "u", HasMax: true}, errAddFieldOnAct},
		{Op{Kind: OpActorAdd, Name: "a", Actor: "u", Min: 1}, errAddFieldOnAct},
		{Op{Kind: OpActorRemove, Name: "a", Actor: "u", Max: 1}, errAddFieldOnAct},
		{Op{Kind: OpActorRemove, Name: "a", Actor: "u", TTL: 1}, errAddFieldOnAct},
		{Op{Kind: 10, Name: "a", Actor: "u"}, errUnknownKind},
		{Op{Kind: OpDelete, Name: "a"}, nil},
		{Op{Kind: OpDelete, Name: "a/3"}, nil},
		{Op{Kind: OpDelete, Name: strings.Repeat("a", MaxNameLen) + "/63"}, nil},
		{Op{Kind: OpDelete, Name: "a", Delta: 1}, errKeyOp},
		{Op{Kind: OpDelete, Name: "a", TTL: 1}, errKeyOp},
		{Op{Kind: OpDelete, Name: "a", Key: "k"}, errKeyOp},
		{Op{Kind: OpDelete, Name: "a", Actor: "u"}, errKeyOp},
		{Op{Kind: OpDelete, Name: "a", HasMin: true}, errKeyOp},
		{Op{Kind: OpSet, Name: "a", Delta: math.MinInt64}, nil},
		{Op{Kind: OpSet, Name: "a", Delta: 5, TTL: MaxTTL}, nil},
		{Op{Kind: OpSet, Name: "a"}, nil},
		{Op{Kind: OpSet, Name: "a", TTL: MaxTTL + 1}, errKeyOp},
		{Op{Kind: OpSet, Name: "a", TTL: -1}, errKeyOp},
		{Op{Kind: OpSet, Name: "a/2", Delta: 1}, errKeyOp},
		{Op{Kind: OpSet, Name: "a", Delta: 1, Key: "k"}, errKeyOp},
		{Op{Kind: OpSet, Name: "a", Delta: 1, HasMax: true, Max: 2}, errKeyOp},
		{Op{Kind: OpSet, Name: "a", Delta: 1, Actor: "u"}, errKeyOp},
		{Op{Kind: OpExpire, Name: "a", TTL: 1}, nil},
		{Op{Kind: OpExpire, Name: "a", TTL: MaxTTL}, nil},
		{Op{Kind: OpExpire, Name: "a"}, errKeyOp},
		{Op{Kind: OpExpire, Name: "a", TTL: MaxTTL + 1}, errKeyOp},
		{Op{Kind: OpExpire, Name: "a", TTL: 1, Delta: 1}, errKeyOp},
		{Op{Kind: OpExpire, Name: "a/1", TTL: 1}, errKeyOp},
		{Op{Kind: OpExpire, Name: "a", TTL: 1, Key: "k"}, errKeyOp},
		{Op{Kind: OpExpire, Name: "a", TTL: 1, Min: 1, HasMin: true}, errKeyOp},
		{Op{Kind: OpAdd, Name: strings.Repeat("a", MaxNameLen), Key: strings.Repeat("k", MaxKeyLen)}, nil},
		{Op{Kind: 0, Name: "a"}, errUnknownKind},
		{Op{Kind: OpAdd}, errEmptyName},
		{Op{Kind: OpAdd, Name: strings.Repeat("a", MaxNameLen+1)}, errNameTooLong},
		{Op{Kind: OpAdd, Name: "a", Key: strings.Repeat("k", MaxKeyLen+1)}, errKeyTooLong},
	}
	for _, tt := range tests {
		if err := tt.op.Validate(); err != tt.want {
			t.Errorf("Validate(%+.20v) = %v, want %v", tt.op, err, tt.want)
		}
	}
}

func FuzzDecodeEntry(f *testing.F) {
	for _, e := range sampleEntries() {
		f.Add(AppendEntry(nil, &e))
	}
	f.Add([]byte{})
	f.Add([]byte{1, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x01})
	f.Add(AppendEntry(nil, &Entry{Time: 3, Ops: []Op{
		{Kind: OpDelete, Name: "a/2"}, {Kind: OpSet, Name: "b", Delta: -4, TTL: 10}, {Kind: OpExpire, Name: "c", TTL: 1},
	}}))
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
		// AppendEntry writes version 1 exactly when every op fits in it (a
		// version 2 input may be re-encoded as version 1, never the reverse).
		if fits := !slices.ContainsFunc(e.Ops, func(op Op) bool { return needsV2(&op) }); (b2[0] == entryV1) != fits {
			t.Fatalf("AppendEntry chose version %d for %+v", b2[0], e)
		}
		// Each version is canonical: re-encoding in the input's own version
		// must give back the input, byte for byte.
		if b3 := appendEntry(nil, &e, b[0]); !bytes.Equal(b, b3) {
			t.Fatalf("accepted non-canonical input\n in % x\nout % x", b, b3)
		}
	})
}

func TestEncodingLayoutV2(t *testing.T) {
	// Pin the version 2 layout too.
	e := Entry{Time: -1, Ops: []Op{
		{Kind: OpActorAdd, Name: "ab", Actor: "u", Key: "k"},
		{Kind: OpAdd, Name: "c", Delta: 1, HasMin: true, HasMax: true, Max: 100, TTL: 1000},
		{Kind: OpAdd, Name: "d", Delta: -1, HasMin: true, Min: -2},
	}}
	want := []byte{
		2, 1, 0x01, 3,
		byte(OpActorAdd), 2, 'a', 'b', flagKey | flagActor, 1, 'k', 1, 'u',
		byte(OpAdd), 1, 'c', flagDelta | flagHasMin | flagHasMax | flagMax | flagTTL, 0x02, 0xc8, 0x01, 0xd0, 0x0f,
		byte(OpAdd), 1, 'd', flagDelta | flagHasMin | flagMin, 0x01, 0x03,
	}
	if got := AppendEntry(nil, &e); !bytes.Equal(got, want) {
		t.Fatalf("got  % x\nwant % x", got, want)
	}
	// Version 1 when nothing needs version 2, as TestEncodingLayout pins.
	for i, e := range sampleEntries() {
		want := byte(entryV1)
		if slices.ContainsFunc(e.Ops, func(op Op) bool { return needsV2(&op) }) {
			want = entryV2
		}
		if got := encVersion(e); got != want {
			t.Errorf("sample %d encoded as version %d, want %d", i, got, want)
		}
	}
}

// TestEntryV2FieldCombinations encodes an op with every subset of the
// optional fields, for every kind: a valid op must round-trip exactly (in
// canonical bytes whose flags name exactly the fields set), an invalid one
// must be rejected with the error Validate gives.
func TestEntryV2FieldCombinations(t *testing.T) {
	values := []struct {
		bit byte
		set func(*Op)
	}{
		{flagDelta, func(op *Op) { op.Delta = -7 }},
		{flagKey, func(op *Op) { op.Key = "key" }},
		{flagActor, func(op *Op) { op.Actor = "actor" }},
		{flagHasMin, func(op *Op) { op.HasMin = true }},
		{flagMin, func(op *Op) { op.Min = -10 }},
		{flagHasMax, func(op *Op) { op.HasMax = true }},
		{flagMax, func(op *Op) { op.Max = 1 << 40 }},
		{flagTTL, func(op *Op) { op.TTL = 60_000 }},
	}
	valid := 0
	for _, kind := range []OpKind{0, OpAdd, OpActorAdd, OpActorRemove, 4, 255} {
		for mask := range 256 {
			op := Op{Kind: kind, Name: "n"}
			for _, v := range values {
				if mask&int(v.bit) != 0 {
					v.set(&op)
				}
			}
			e := Entry{Time: 42, Ops: []Op{op, {Kind: OpAdd, Name: "x", Delta: 1}}}
			b := appendEntry(nil, &e, entryV2)
			if flags := b[4+2+len(op.Name)]; flags != byte(mask) {
				t.Fatalf("kind %d mask %#x: flags byte %#x", kind, mask, flags)
			}
			got, err := DecodeEntry(b)
			if verr := op.Validate(); verr != nil {
				if !errors.Is(err, verr) {
					t.Fatalf("kind %d mask %#x: invalid op (%v) decoded: %+v, %v", kind, mask, verr, got, err)
				}
				continue
			}
			valid++
			if err != nil || !sameEntry(got, e) {
				t.Fatalf("kind %d mask %#x: got %+v, %v; want %+v", kind, mask, got, err, e)
			}
			if b2 := appendEntry(nil, &got, entryV2); !bytes.Equal(b, b2) {
				t.Fatalf("kind %d mask %#x: re-encoding differs", kind, mask)
			}
			// AppendEntry picks the smallest version that carries it all.
			if b1 := AppendEntry(nil, &e); (b1[0] == entryV1) != (mask&^(flagDelta|flagKey) == 0 && kind == OpAdd) {
				t.Fatalf("kind %d mask %#x: AppendEntry wrote version %d", kind, mask, b1[0])
			} else if got1, err := DecodeEntry(b1); err != nil || !sameEntry(got1, e) {
				t.Fatalf("kind %d mask %#x: AppendEntry round trip: %+v, %v", kind, mask, got1, err)
			}
		}
	}
	// OpAdd: delta, key, each bound flag with or without a value (min -10 <
	// max 2^40 whenever both are set, values only with their flag), TTL:
	// 2*2*3*3*2 = 72. Actor ops: key, actor required, nothing else: 2 each.
	if valid != 72+2+2 {
		t.Fatalf("%d valid combinations, want 76", valid)
	}
}

func TestDecodeEntryV2Rejects(t *testing.T) {
	hdr := []byte{2, 1, 0, 1} // version 2, ops, time 0, one op
	op := func(rest ...byte) []byte { return append(bytes.Clone(hdr), rest...) }
	add := byte(OpAdd)
	like := byte(OpActorAdd)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"valid add", op(add, 1, 'a', 0), nil},
		{"valid like", op(like, 1, 'a', flagActor, 1, 'u'), nil},
		{"no flags", op(add, 2, 'a', 'b'), errTruncated},
		{"zero delta flagged", op(add, 1, 'a', flagDelta, 0), errOpFlags},
		{"empty key flagged", op(add, 1, 'a', flagKey, 0), errOpFlags},
		{"empty actor flagged", op(like, 1, 'a', flagActor, 0), errOpFlags},
		{"zero min flagged", op(add, 1, 'a', flagHasMin|flagMin, 0), errOpFlags},
		{"zero max flagged", op(add, 1, 'a', flagHasMax|flagMax, 0), errOpFlags},
		{"zero ttl flagged", op(add, 1, 'a', flagTTL, 0), errOpFlags},
		{"min without HasMin", op(add, 1, 'a', flagMin, 2), errBoundUnset},
		{"max without HasMax", op(add, 1, 'a', flagMax, 2), errBoundUnset},
		{"min over max", op(add, 1, 'a', flagHasMin|flagMin|flagHasMax|flagMax, 4, 2), errBounds},
		{"negative ttl", op(add, 1, 'a', flagTTL, 1), errTTL},
		{"ttl over max", func() []byte {
			return binary.AppendVarint(op(add, 1, 'a', flagTTL), MaxTTL+1)
		}(), errTTL},
		{"actor on add", op(add, 1, 'a', flagActor, 1, 'u'), errActorOnAdd},
		{"like without actor", op(like, 1, 'a', 0), errEmptyActor},
		{"like with delta", op(like, 1, 'a', flagDelta|flagActor, 2, 1, 'u'), errAddFieldOnAct},
		{"like with ttl", op(like, 1, 'a', flagActor|flagTTL, 1, 'u', 2), errAddFieldOnAct},
		{"like with bound", op(like, 1, 'a', flagActor|flagHasMax, 1, 'u'), errAddFieldOnAct},
		{"actor too long", op(like, 1, 'a', flagActor, MaxActorLen+1, 'u'), errActorTooLong},
		{"actor past end", op(like, 1, 'a', flagActor, 9, 'u'), errTruncated},
		{"unknown kind", op(10, 1, 'a', flagActor, 1, 'u'), errUnknownKind},
		{"kind zero", op(0, 1, 'a', 0), errUnknownKind},
		{"empty name", op(add, 0, 0, 0), errEmptyName},
		{"name too long", op(add, 0x84, 0x02, 0), errNameTooLong},
		{"ttl past end", op(add, 1, 'a', flagTTL), errTruncated},
		{"non-minimal delta", op(add, 1, 'a', flagDelta, 0x82, 0x00), errVarint},
		{"trailing", op(add, 1, 'a', 0, 0), errTrailing},
		// Four bytes per op at least: a count of 2 in 7 bytes of ops is refused
		// before allocating, and so is 2^63.
		{"count over length", []byte{2, 1, 0, 2, add, 1, 'a', 0, add, 1, 'b'}, errOpCount},
		{"absurd count", []byte{2, 1, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01}, errOpCount},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := DecodeEntry(tt.in)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("DecodeEntry(% x) = %+v, %v; want error %v", tt.in, e, err, tt.want)
			}
			if err != nil && (e.Ops != nil || e.Time != 0) {
				t.Fatalf("rejected input returned a non-zero entry %+v", e)
			}
		})
	}
}

func TestDecodeEntryV2StringsDoNotAlias(t *testing.T) {
	e := Entry{Ops: []Op{{Kind: OpActorAdd, Name: "name", Actor: "actor", Key: "key"}}}
	b := AppendEntry(nil, &e)
	got, err := DecodeEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 'X'
	}
	if got.Ops[0] != e.Ops[0] {
		t.Fatalf("decoded strings changed with the input buffer: %+v", got.Ops[0])
	}
}

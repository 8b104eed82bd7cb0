package fsm

import (
	"bytes"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"testing"
	"time"
)

// The split slot of a key has always been FNV-64a of its bytes modulo the
// shard count; routers place keyed adds by it, so the table's key hash must
// stay exactly that.
func TestKeyHashIsFNV64a(t *testing.T) {
	for _, key := range []string{"", "k", "req-1", "\x00\xff", "8a1f-0000-4000-8000-000000000001"} {
		h := fnv.New64a()
		h.Write([]byte(key))
		if got := hashKey(key).lo; got != h.Sum64() {
			t.Fatalf("hashKey(%q).lo = %x, FNV-64a %x", key, got, h.Sum64())
		}
		if KeySlot(key, 7) != int(h.Sum64()%7) {
			t.Fatalf("KeySlot(%q) moved", key)
		}
	}
	if k := hashKey("ab"); parseKeyHash(k.String()) != k || len(k.String()) != hashedKeyLen {
		t.Fatal("keyHash string form does not round trip")
	}
}

// opPrint tells apart every field a retry must repeat.
func TestOpPrintSeparatesFields(t *testing.T) {
	base := Op{Kind: OpAdd, Name: "ab", Delta: 1}
	variants := []Op{
		{Kind: OpAdd, Name: "a"},
		{Kind: OpAdd, Name: "abc"},
		{Kind: OpActorAdd, Name: "ab", Actor: "x"},
		{Kind: OpActorAdd, Name: "a", Actor: "bx"},
		{Kind: OpActorRemove, Name: "ab", Actor: "x"},
		{Kind: OpAdd, Name: "ab", HasMin: true},
		{Kind: OpAdd, Name: "ab", HasMax: true},
		{Kind: OpAdd, Name: "ab", HasMin: true, Min: 1},
		{Kind: OpAdd, Name: "ab", HasMax: true, Max: 1},
		{Kind: OpAdd, Name: "ab", TTL: 1},
	}
	seen := map[uint64]Op{opPrint(&base): base}
	for _, op := range variants {
		p := opPrint(&op)
		if prev, dup := seen[p]; dup {
			t.Fatalf("%+v and %+v have one print", op, prev)
		}
		seen[p] = op
	}
	other := base
	other.Delta, other.Key = 5, "k" // not part of the print
	if opPrint(&other) != opPrint(&base) {
		t.Fatal("print depends on the delta or the key")
	}
}

// rec is a record with a chosen key hash, for driving the table directly.
func rec(lo uint64, hi uint32, time int64) dedupRec {
	return dedupRec{key: lo, key2: hi, time: time, kind: OpAdd, value: int64(hi)}
}

// The index under heavy collisions: keys from 8 FNV values (so the same
// home slot) told apart only by the second hash, pushed and expired at
// random, checked against a model after every step. Backward-shift deletion
// must keep every live key reachable and nothing else.
func TestDedupIndexCollisions(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	tab := newDedupTable()
	defer tab.free()
	type key struct {
		lo uint64
		hi uint32
	}
	var live []key // in push order, as the table holds them
	now := int64(0)
	for step := range 20_000 {
		if rng.IntN(3) > 0 || len(live) == 0 {
			k := key{lo: uint64(rng.IntN(8)) * 0x1234567, hi: rng.Uint32()}
			if _, dup := tab.lookup(keyHash(k)); dup {
				continue
			}
			now++
			tab.push(rec(k.lo, k.hi, now), 0)
			live = append(live, k)
		} else {
			n := rng.IntN(len(live)) + 1 // expire the n oldest
			tab.expire(tab.rec(tab.head + uint64(n) - 1).time)
			live = live[n:]
		}
		if step%97 == 0 || len(live) < 5 {
			checkDedup(tab)
		}
		if tab.len() != len(live) {
			t.Fatalf("step %d: %d records, model %d", step, tab.len(), len(live))
		}
		for _, k := range live[max(0, len(live)-3):] {
			if _, ok := tab.lookup(keyHash(k)); !ok {
				t.Fatalf("step %d: live key %x/%x not found", step, k.lo, k.hi)
			}
		}
	}
	checkDedup(tab)
	for _, k := range live {
		if _, ok := tab.lookup(keyHash(k)); !ok {
			t.Fatalf("live key %x/%x not found", k.lo, k.hi)
		}
	}
	if _, ok := tab.lookup(keyHash{lo: 0x1234567, hi: 7}); ok && len(live) == 0 {
		t.Fatal("found a key never pushed")
	}
}

// Record numbers are stored in the index relative to an epoch in 32 bits;
// a table whose numbers pass 2^32 rebases it and still finds every key.
func TestDedupIndexEpochRebase(t *testing.T) {
	tab := newDedupTable()
	defer tab.free()
	start := uint64(math.MaxUint32/chunkRecs+3) * chunkRecs
	tab.first, tab.head, tab.tail = start, start, start
	tab.push(rec(1, 1, 1), 0)
	tab.epoch = start + 5 - (math.MaxUint32 - 1) // as if four billion records had come and gone
	tab.reindex(len(tab.idx.slots))
	tab.epoch = start + 5 - (math.MaxUint32 - 1)
	for i := range 20 {
		tab.push(rec(uint64(i+2), uint32(i), int64(i+2)), 0)
	}
	if tab.epoch <= start-1 {
		t.Fatalf("epoch %d not rebased (head %d)", tab.epoch, tab.head)
	}
	checkDedup(tab)
	if tab.len() != 21 {
		t.Fatalf("%d records", tab.len())
	}
}

// A Snapshot shares the chunks it needs; what the Machine does after (more
// keys, expiry of every record the Snapshot holds, a Restore) must not
// change what it writes, and its chunks are freed only once both have let
// them go.
func TestSnapshotSharesChunks(t *testing.T) {
	m := New(Config{DedupTTL: 10 * time.Second})
	for i := range chunkRecs + 10 {
		m.Apply(&Entry{Time: sec, Ops: []Op{keyed(fmt.Sprint("c", i%5), 1, fmt.Sprint("k", i))}})
	}
	withTTLKey := withKey(withTTL(add("w", 1), 60_000), "ttl-key")
	m.Apply(&Entry{Time: 2 * sec, Ops: []Op{withTTLKey}})
	s := m.Snapshot()
	want := snapBytes(t, s)
	held := m.dedup.chunks[0]

	for i := range 3 * chunkRecs {
		m.Apply(&Entry{Time: 20 * sec, Ops: []Op{keyed("later", 1, fmt.Sprint("l", i))}})
	}
	if m.DedupKeys() != 3*chunkRecs {
		t.Fatalf("DedupKeys = %d", m.DedupKeys())
	}
	if held.mem == nil || held.refs.Load() != 1 {
		t.Fatalf("expired chunk held by the snapshot: refs %d", held.refs.Load())
	}
	if got := snapBytes(t, s); !bytes.Equal(got, want) {
		t.Fatal("snapshot changed after more applies and expiry")
	}
	if err := m.Restore(bytes.NewReader(want)); err != nil {
		t.Fatal(err)
	}
	if got := snapBytes(t, s); !bytes.Equal(got, want) {
		t.Fatal("snapshot changed after a Restore")
	}
	if got := snapBytes(t, m.Snapshot()); !bytes.Equal(got, want) {
		t.Fatal("restored machine writes other bytes")
	}
	s.Release()
	s.Release() // twice is harmless
	if held.mem != nil || held.refs.Load() != 0 {
		t.Fatalf("chunk not freed after release: refs %d", held.refs.Load())
	}
	// The restored machine answers retries from before the snapshot.
	res := m.Apply(&Entry{Time: 3 * sec, Ops: []Op{keyed("c3", 1, "k3"), withTTLKey, keyed("c3", 2, "k3")}})
	if res[0].Code != OK || res[0].Value != 1 || res[1].ExpiresAt != 62*sec || res[2].Code != ErrKeyReused {
		t.Fatalf("retries after restore: %+v", res)
	}
}

// dedupBytes returns what a remembered key costs the Machine: the Go heap
// it grows by (after a collection) plus the off-heap table, per key, for n
// UUID-sized keys over 1000 counters (whose own share is negligible).
func dedupBytes(tb testing.TB, n int) (heap, total float64) {
	return bytesPer(tb, New(Config{DedupTTL: time.Hour}), n,
		func(k int) Op {
			return keyed(fmt.Sprintf("c-%04d", k%1000), 1, fmt.Sprintf("%08x-0000-4000-8000-%012x", k, k))
		},
		(*Machine).DedupKeys, (*Machine).DedupBytes)
}

func TestDedupMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("remembers 500k keys")
	}
	heap, total := dedupBytes(t, 500_000)
	t.Logf("%.1f bytes per remembered key (%.1f on the Go heap)", total, heap)
	if !raceEnabled && (total > 64 || heap > 4) {
		t.Fatalf("%.1f bytes per key (%.1f on the heap), want <= 64 (<= 4)", total, heap)
	}
}

func BenchmarkDedupMemory(b *testing.B) {
	var heap, total float64
	for b.Loop() {
		heap, total = dedupBytes(b, 1_000_000)
	}
	b.ReportMetric(total, "bytes/key")
	b.ReportMetric(heap, "heap-bytes/key")
}

// An OpImportKey carries its key or the key's hash, never both or neither.
func TestImportKeyForms(t *testing.T) {
	h := hashKey("k")
	for _, tc := range []struct {
		op    Op
		valid bool
	}{
		{ImportKey("a/1", "k", 1, 2), true},
		{ImportKeyHash("a/1", h, 1, 2), true},
		{Op{Kind: OpImportKey, Name: "a/1", Key: "k", Actor: h.String(), HasMin: true}, false},
		{Op{Kind: OpImportKey, Name: "a/1", Actor: "short", HasMin: true}, false},
		{Op{Kind: OpImportKey, Name: "a/1", HasMin: true}, false},
	} {
		if err := tc.op.Validate(); (err == nil) != tc.valid {
			t.Fatalf("%+v: Validate = %v", tc.op, err)
		}
	}
	// Both forms remember the same key.
	for _, op := range []Op{ImportKey("a/1", "k", 1, 2), ImportKeyHash("a/1", h, 1, 2)} {
		m := New(Config{})
		apply1(m, sec, op)
		if r := apply1(m, sec, keyed("a/1", 1, "k")); r != ok(2) {
			t.Fatalf("retry after %+v: %+v", op, r)
		}
	}
}

// NextKeyExpiry names the time an entry must carry to forget the oldest key.
func TestNextKeyExpiry(t *testing.T) {
	m := New(Config{DedupTTL: 10 * time.Second})
	if m.NextKeyExpiry() != 0 {
		t.Fatal("expiry with no keys")
	}
	apply1(m, sec, keyed("a", 1, "k1"))
	apply1(m, 2*sec, keyed("a", 1, "k2"))
	if got := m.NextKeyExpiry(); got != 11*sec {
		t.Fatalf("NextKeyExpiry = %d, want %d", got, 11*sec)
	}
	m.Apply(&Entry{Time: m.NextKeyExpiry()})
	if m.DedupKeys() != 1 || m.NextKeyExpiry() != 12*sec {
		t.Fatalf("after an entry at the expiry: %d keys, next %d", m.DedupKeys(), m.NextKeyExpiry())
	}
}

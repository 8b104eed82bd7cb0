package fsm

import (
	"encoding/binary"
	"hash/crc32"
	"math"
	"sync"
	"sync/atomic"
	"unsafe"
)

// The dedup table remembers, for each idempotency key applied within the
// TTL, what the first application answered. It is the part of the state that
// grows with the write rate rather than with the number of counters (a
// cluster taking tens of thousands of keyed increments a second remembers
// tens of millions of keys), so its records are small, fixed-size and free
// of pointers, and live outside the Go heap (see offHeap):
//
//   - A record holds a 96-bit hash of the key, a 64-bit print of the op's
//     fields (all but the delta, which is kept whole), and the first
//     Result. Two keys collide only if both hashes do; two ops with one key
//     are told apart by the print and the delta.
//   - Records are numbered in insertion order and stored in fixed-size
//     chunks, so expiry pops whole records off the front and frees a chunk
//     once it has passed it, growth never copies, and a Snapshot shares
//     every chunk it needs instead of copying records: they never change
//     once written, and a chunk is freed only when the table and every
//     Snapshot holding it have let it go (a reference count).
//   - An open-addressing index (linear probing, backward-shift deletion, no
//     tombstones) maps a key hash to its record number in 4 bytes a slot.
//
// The hashes and the chunked layout are written by hand because they are
// what makes a remembered key cost bytes rather than hundreds of them: a Go
// map keyed by the hash costs several times the index per entry, and any
// per-record pointer or string puts every record under the collector.
type dedupTable struct {
	// chunks[i] holds records first+i*chunkRecs onwards; first is a
	// multiple of chunkRecs. The live records are [head, tail).
	chunks     []*recChunk
	first      uint64
	head, tail uint64

	// idx maps a key hash to its record: a slot holds record number -
	// epoch + 1. The epoch is rebased (and the index rebuilt) before a
	// number would not fit in 32 bits, once every four billion records.
	idx     slotIndex
	epoch   uint64
	expires map[uint64]int64 // the first Result's ExpiresAt, by record number, for the few that have one
}

// dedupRec is one remembered key. Records are never changed once written.
type dedupRec struct {
	key   uint64 // keyHash.lo
	print uint64 // opPrint of the op
	delta int64
	value int64 // the first Result's
	time  int64 // Time of the entry that first carried the key
	key2  uint32
	code  Code // the first Result's
	kind  OpKind
	flags uint8 // recChanged, recExpires
	_     uint8
}

const (
	recChanged = 0x01 // the first Result had Changed
	recExpires = 0x02 // the first Result had an ExpiresAt (in dedupTable.expires)
)

const (
	chunkRecs  = 4096
	recSize    = int(unsafe.Sizeof(dedupRec{}))
	chunkBytes = chunkRecs * recSize
	minSlots   = 1024
	// Indexes up to this size stay on the Go heap: small tables (most
	// shards, and every test) should not cost a mapping each.
	maxHeapSlots = 16 << 10
)

func (r *dedupRec) matches(op *Op, print uint64) bool {
	return r.kind == op.Kind && r.delta == op.Delta && r.print == print
}

// keyHash identifies an idempotency key in the table: FNV-64a and CRC-32C
// of its bytes, two unrelated functions, so two keys are confused only if
// both collide. lo is also the hash KeySlot has always used to spread a
// split counter's keys over its sub-counters.
type keyHash struct {
	lo uint64
	hi uint32
}

// hashedKeyLen is the length of a keyHash in its string form (see
// ImportKeyHash).
const hashedKeyLen = 12

func hashKey(key string) keyHash {
	b := unsafe.Slice(unsafe.StringData(key), len(key)) // read only
	return keyHash{lo: fnvString(fnvOffset, key), hi: crc32.Checksum(b, castagnoli)}
}

func (h keyHash) String() string {
	var b [hashedKeyLen]byte
	binary.LittleEndian.PutUint64(b[:], h.lo)
	binary.LittleEndian.PutUint32(b[8:], h.hi)
	return string(b[:])
}

func parseKeyHash(s string) keyHash {
	return keyHash{lo: binary.LittleEndian.Uint64([]byte(s[:8])), hi: binary.LittleEndian.Uint32([]byte(s[8:]))}
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// fnvString is FNV-64a, the same as hash/fnv's, without its allocation.
func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

func fnvUint64(h, v uint64) uint64 {
	for range 8 {
		h ^= v & 0xff
		h *= fnvPrime
		v >>= 8
	}
	return h
}

// opPrint hashes every field of op that tells a retry from a different op
// under the same key, except the delta (compared whole) and the key itself:
// kind, name, actor, bounds and TTL. Strings are length-prefixed so that
// fields cannot run into each other.
func opPrint(op *Op) uint64 {
	var flags uint64
	if op.HasMin {
		flags |= 1
	}
	if op.HasMax {
		flags |= 2
	}
	h := fnvUint64(fnvOffset, uint64(op.Kind)|flags<<8)
	h = fnvUint64(h, uint64(len(op.Name)))
	h = fnvString(h, op.Name)
	h = fnvUint64(h, uint64(len(op.Actor)))
	h = fnvString(h, op.Actor)
	h = fnvUint64(h, uint64(op.Min))
	h = fnvUint64(h, uint64(op.Max))
	return fnvUint64(h, uint64(op.TTL))
}

// block is off-heap memory shared by reference count: the table that made
// it holds one reference, and each Snapshot sharing it one more. The last
// release frees it.
type block struct {
	mem  []byte
	refs atomic.Int32
}

func newBlock(n int) *block {
	b := &block{mem: offHeap(n)}
	b.refs.Store(1)
	return b
}

func (b *block) retain() { b.refs.Add(1) }

func (b *block) release() {
	if b.refs.Add(-1) == 0 {
		freeOffHeap(b.mem)
		b.mem = nil
	}
}

// chunk is n records of type T in a block: the tables' unit of storage.
type chunk[T any] struct {
	*block
	recs []T
}

func newChunk[T any](n int) *chunk[T] {
	var zero T
	b := newBlock(n * int(unsafe.Sizeof(zero)))
	return &chunk[T]{block: b, recs: unsafe.Slice((*T)(unsafe.Pointer(unsafe.SliceData(b.mem))), n)}
}

// recChunk is a chunk of the dedup table.
type recChunk = chunk[dedupRec]

func newDedupTable() *dedupTable {
	return &dedupTable{expires: make(map[uint64]int64)}
}

func (t *dedupTable) len() int { return int(t.tail - t.head) }

func (t *dedupTable) rec(seq uint64) *dedupRec {
	return &t.chunks[(seq-t.first)/chunkRecs].recs[seq%chunkRecs]
}

// result returns the first Result of record seq.
func (t *dedupTable) result(seq uint64) Result {
	r := t.rec(seq)
	res := Result{Value: r.value, Code: r.code, Changed: r.flags&recChanged != 0}
	if r.flags&recExpires != 0 {
		res.ExpiresAt = t.expires[seq]
	}
	return res
}

// lookup returns the number of the record of the key with hash h.
func (t *dedupTable) lookup(h keyHash) (uint64, bool) {
	x := &t.idx
	if len(x.slots) == 0 {
		return 0, false
	}
	mask := len(x.slots) - 1
	for i := x.home(h.lo); ; i = (i + 1) & mask {
		v := x.slots[i]
		if v == 0 {
			return 0, false
		}
		seq := t.epoch + uint64(v-1)
		if r := t.rec(seq); r.key == h.lo && r.key2 == h.hi {
			return seq, true
		}
	}
}

func (t *dedupTable) slotOf(seq uint64) uint32 { return uint32(seq - t.epoch + 1) }

func (t *dedupTable) hashOf(v uint32) uint64 { return t.rec(t.epoch + uint64(v-1)).key }

// reindex rebuilds the index with n slots (a power of two) and the epoch at
// head.
func (t *dedupTable) reindex(n int) {
	t.idx.alloc(n)
	t.epoch = t.head
	for s := t.head; s != t.tail; s++ {
		t.idx.insert(t.rec(s).key, t.slotOf(s))
	}
}

// push appends a record; the key must not be in the table.
func (t *dedupTable) push(r dedupRec, expiresAt int64) {
	if t.tail == t.first+uint64(len(t.chunks))*chunkRecs {
		t.chunks = append(t.chunks, newChunk[dedupRec](chunkRecs))
	}
	switch live := t.len() + 1; {
	case 4*live > 3*len(t.idx.slots):
		t.reindex(slotsFor(live))
	case t.tail-t.epoch >= math.MaxUint32-1:
		t.reindex(len(t.idx.slots))
	}
	if expiresAt != 0 {
		r.flags |= recExpires
		t.expires[t.tail] = expiresAt
	}
	*t.rec(t.tail) = r
	t.idx.insert(r.key, t.slotOf(t.tail))
	t.tail++
}

// expire forgets the records whose time is <= cutoff, oldest first. It
// stops at the first record still live: a record behind it with an earlier
// time (the leader's clock stepped back) waits its turn, which is a little
// late but the same on every replica.
func (t *dedupTable) expire(cutoff int64) {
	n := 0
	for ; t.head != t.tail; n++ {
		r := t.rec(t.head)
		if r.time > cutoff {
			break
		}
		t.idx.remove(r.key, t.slotOf(t.head), t.hashOf)
		if r.flags&recExpires != 0 {
			delete(t.expires, t.head)
		}
		t.head++
		if t.head-t.first == chunkRecs {
			t.chunks[0].release()
			t.chunks[0] = nil
			t.chunks = t.chunks[1:]
			t.first += chunkRecs
		}
	}
	// After a burst of keys, give the index memory back once it is less
	// than 1/8 full; the cost, O(live), is amortized over the pushes that
	// grew it. Go maps never shrink, so rebuild expires too.
	if live := t.len(); n > 0 && len(t.idx.slots) > minSlots && 8*live < len(t.idx.slots) {
		t.reindex(slotsFor(live))
		exp := make(map[uint64]int64, len(t.expires))
		for k, v := range t.expires {
			exp[k] = v
		}
		t.expires = exp
	}
}

// bytes returns the memory the table holds, about: every chunk in full
// (the kernel backs only the pages touched, so it is less while the newest
// chunk fills), the index, and the expiries.
func (t *dedupTable) bytes() int64 {
	return int64(len(t.chunks))*int64(chunkBytes) + 4*int64(len(t.idx.slots)) + 48*int64(len(t.expires))
}

// free lets go of the table's memory. The table must not be used after.
func (t *dedupTable) free() {
	for _, c := range t.chunks {
		c.release()
	}
	t.chunks = nil
	t.idx.free()
}

// dedupView is a Snapshot's read-only share of a table: the chunks that held
// its live records, each with a reference taken, so expiry and later pushes
// in the table leave them alone.
type dedupView struct {
	chunks     []*recChunk
	first      uint64
	head, tail uint64
	expires    map[uint64]int64
	once       sync.Once
}

func (t *dedupTable) view() *dedupView {
	v := &dedupView{first: t.first, head: t.head, tail: t.tail}
	if t.head != t.tail {
		v.chunks = make([]*recChunk, (t.tail-1-t.first)/chunkRecs+1)
		copy(v.chunks, t.chunks)
		for _, c := range v.chunks {
			c.retain()
		}
	}
	if len(t.expires) > 0 {
		v.expires = make(map[uint64]int64, len(t.expires))
		for k, x := range t.expires {
			v.expires[k] = x
		}
	}
	return v
}

func (v *dedupView) len() int { return int(v.tail - v.head) }

func (v *dedupView) rec(seq uint64) *dedupRec {
	return &v.chunks[(seq-v.first)/chunkRecs].recs[seq%chunkRecs]
}

// release lets go of the view's chunks, once.
func (v *dedupView) release() {
	v.once.Do(func() {
		for _, c := range v.chunks {
			c.release()
		}
		v.chunks = nil
	})
}

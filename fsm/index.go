package fsm

import (
	"math/bits"
	"slices"
	"unsafe"
)

// slotIndex is the open-addressing hash index both tables use: a
// power-of-two array of 4-byte slots (0 = empty), linear probing, and
// backward-shift deletion, so there are no tombstones and a lookup stops
// at the first empty slot. What a slot's value means (a record number, in
// some form) and how an entry's hash is found again are the owner's. The
// array lives off the Go heap once it is large (see offHeap).
type slotIndex struct {
	slots []uint32
	mem   []byte
	off   bool // mem came from offHeap
	shift uint // 64 - log2(len(slots))
}

// alloc replaces the index with n empty slots (a power of two).
func (x *slotIndex) alloc(n int) {
	x.free()
	if n > maxHeapSlots {
		x.mem, x.off = offHeap(4*n), true
	} else {
		x.mem, x.off = make([]byte, 4*n), false
	}
	x.slots = unsafe.Slice((*uint32)(unsafe.Pointer(unsafe.SliceData(x.mem))), n)
	x.shift = uint(64 - bits.TrailingZeros(uint(n)))
}

func (x *slotIndex) free() {
	if x.off {
		freeOffHeap(x.mem)
	}
	x.slots, x.mem, x.off = nil, nil, false
}

// home is the slot where probing for hash h starts (Fibonacci hashing:
// the high bits of h times 2^64/φ, so every bit of h counts).
func (x *slotIndex) home(h uint64) int {
	return int((h * 0x9e3779b97f4a7c15) >> x.shift)
}

// insert puts v in the first free slot from h's home; v must not be there.
func (x *slotIndex) insert(h uint64, v uint32) {
	mask := len(x.slots) - 1
	i := x.home(h)
	for x.slots[i] != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = v
}

// remove takes v, whose hash is h, out of the index, shifting back the
// entries after it that may move closer to their home; hashOf gives the
// hash of a slot's value.
func (x *slotIndex) remove(h uint64, v uint32, hashOf func(v uint32) uint64) {
	mask := len(x.slots) - 1
	i := x.home(h)
	for x.slots[i] != v {
		i = (i + 1) & mask
	}
	for j := i; ; {
		j = (j + 1) & mask
		w := x.slots[j]
		if w == 0 {
			break
		}
		k := x.home(hashOf(w))
		// The entry at j may fill the hole at i unless its home lies
		// cyclically in (i, j].
		if (i < j && (k <= i || k > j)) || (i > j && k <= i && k > j) {
			x.slots[i] = w
			i = j
		}
	}
	x.slots[i] = 0
}

// build fills a fresh index of n slots with count entries, the refs next
// yields, whose hashes hashOf gives. It places them in the order of their
// home slots, so the array is written through once from start to end
// instead of at a random slot for each entry, which for millions of
// entries is most of a restore's time; entries that would run past the end
// are inserted after, wrapping round as usual.
func (x *slotIndex) build(n, count int, next func(i int) uint32, hashOf func(ref uint32) uint64) {
	x.alloc(n)
	keys := make([]uint64, count)
	for i := range keys {
		ref := next(i)
		keys[i] = uint64(x.home(hashOf(ref)))<<32 | uint64(ref)
	}
	slices.Sort(keys)
	pos := -1
	var wrap []uint32
	for _, k := range keys {
		p := max(int(k>>32), pos+1)
		if p >= n {
			wrap = append(wrap, uint32(k))
			continue
		}
		x.slots[p] = uint32(k)
		pos = p
	}
	for _, ref := range wrap {
		x.insert(hashOf(ref), ref)
	}
}

// slotsFor returns the index size for n entries: a power of two at least
// twice n, so a fresh index is at most half full.
func slotsFor(n int) int {
	if 2*n <= minSlots {
		return minSlots
	}
	return 1 << bits.Len(uint(2*n-1))
}

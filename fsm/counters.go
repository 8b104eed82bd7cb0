package fsm

import (
	"bytes"
	"encoding/binary"
	"hash/maphash"
	"maps"
	"slices"
	"sync"
	"unsafe"
)

// The counter table holds every counter a shard replica stores, so a node
// with ten million counters holds ten million records per replica; like the
// dedup table (see dedup.go) it keeps them off the Go heap and free of
// pointers, so they cost their bytes and nothing more: no collector
// headroom, no scanning, no per-counter allocation.
//
//   - A record (32 bytes) holds the value, the expiry, the name's place in
//     the name arena, a hash tag of the name and whether the counter has an
//     actor set. Records live in fixed-size chunks; a freed record goes on
//     a free list for the next new counter.
//   - Names live in an append-only arena of large blocks, each name
//     length-prefixed. A deleted counter's name is garbage until the arena
//     is compacted, which happens once garbage is half of it.
//   - An open-addressing index (linear probing, backward-shift deletion)
//     maps a name to its record in 4 bytes a slot. It is local to the
//     replica (its hash is seeded per table), so it is never written to a
//     snapshot.
//   - Actor sets stay Go objects, in a side map by record number: only
//     liked counters have one.
//
// A Snapshot shares the record chunks and the arena instead of copying
// them. The arena is append-only, so sharing it is free; a record chunk that
// a Snapshot still holds is copied before Apply first changes it (copy on
// write), so a snapshot costs a copy of only the chunks written while it is
// being persisted.
type ctrTable struct {
	ctrData
	seed    maphash.Seed
	n       uint32   // records handed out: [0, n), the free ones included
	unused  []uint32 // freed records, reused last in first out
	live    int
	aused   uint64 // next arena offset
	garbage uint64 // arena bytes of names of deleted counters

	idx slotIndex // a slot holds record + 1, hashed by the record's tag

	actors map[uint32]*actorSet // by record, for the counters that have one

	// The last name Apply looked up, and what it found: an op loads its
	// counter and then stores it, so the store need not probe again.
	// Only Apply's methods (getW, put, del) use it; readers run
	// concurrently and must not.
	last      string
	lastR     uint32
	lastTag   uint32
	lastFound bool
}

// ctrData is what a table and its views read records and names from.
type ctrData struct {
	chunks []*ctrChunk
	arena  []*block // arena[i] holds offsets [i*arenaBlock, (i+1)*arenaBlock)
}

type ctrRec struct {
	value  int64
	expiry int64
	name   uint64 // arena offset of the name; 0 = a free record
	tag    uint32 // the high half of the name's hash
	actors uint32 // 1 if the counter has an actor set
}

const (
	ctrChunkRecs  = 2048
	ctrChunkBytes = ctrChunkRecs * int(unsafe.Sizeof(ctrRec{}))
	arenaBlock    = 1 << 20
	arenaStart    = 8 // offset 0 means "no name"
)

// ctrChunk is a chunk of the counter table.
type ctrChunk = chunk[ctrRec]

func newCtrTable() *ctrTable {
	return &ctrTable{seed: maphash.MakeSeed(), actors: make(map[uint32]*actorSet)}
}

func (d *ctrData) rec(r uint32) *ctrRec {
	return &d.chunks[r/ctrChunkRecs].recs[r%ctrChunkRecs]
}

// name returns the name at arena offset off. The bytes are the arena's:
// read only, valid while the arena block is held.
func (d *ctrData) name(off uint64) []byte {
	mem := d.arena[off/arenaBlock].mem
	i := off % arenaBlock
	n := uint64(binary.LittleEndian.Uint16(mem[i:]))
	return mem[i+2 : i+2+n]
}

// counter returns record r as a counter.
func ctrOf(rec *ctrRec, actors map[uint32]*actorSet, r uint32) counter {
	c := counter{value: rec.value, expiry: rec.expiry}
	if rec.actors != 0 {
		c.actors = actors[r]
	}
	return c
}

func (t *ctrTable) len() int { return t.live }

func (t *ctrTable) hash(name string) uint32 {
	return uint32(maphash.String(t.seed, name) >> 32)
}

func (t *ctrTable) hashOf(v uint32) uint64 { return uint64(t.rec(v - 1).tag) }

// find returns the record of the named counter, or the tag and false.
func (t *ctrTable) find(name string) (r uint32, tag uint32, ok bool) {
	tag = t.hash(name)
	x := &t.idx
	if len(x.slots) == 0 {
		return 0, tag, false
	}
	mask := len(x.slots) - 1
	for i := x.home(uint64(tag)); ; i = (i + 1) & mask {
		v := x.slots[i]
		if v == 0 {
			return 0, tag, false
		}
		if rec := t.rec(v - 1); rec.tag == tag && string(t.name(rec.name)) == name {
			return v - 1, tag, true
		}
	}
}

// findW is find for Apply, through the cache of its last lookup. The cache
// holds when name is the very string looked up last (same bytes in memory),
// which is what an op's load and store pass.
func (t *ctrTable) findW(name string) (r uint32, tag uint32, ok bool) {
	if len(name) == len(t.last) && unsafe.StringData(name) == unsafe.StringData(t.last) && name != "" {
		return t.lastR, t.lastTag, t.lastFound
	}
	r, tag, ok = t.find(name)
	t.last, t.lastR, t.lastTag, t.lastFound = name, r, tag, ok
	return r, tag, ok
}

// getW is get for Apply (see findW).
func (t *ctrTable) getW(name string) (counter, bool) {
	r, _, ok := t.findW(name)
	if !ok {
		return counter{}, false
	}
	return ctrOf(t.rec(r), t.actors, r), true
}

// get returns the named counter and whether the table holds it. It only
// reads, so readers may call it concurrently.
func (t *ctrTable) get(name string) (counter, bool) {
	r, _, ok := t.find(name)
	if !ok {
		return counter{}, false
	}
	return ctrOf(t.rec(r), t.actors, r), true
}

// wrec returns record r for writing: its chunk is copied first if a
// Snapshot shares it. (Only Apply writes, and only Snapshot, which never
// runs alongside Apply, adds references, so a count of 1 cannot grow while
// the record is written.)
func (t *ctrTable) wrec(r uint32) *ctrRec {
	i := r / ctrChunkRecs
	if c := t.chunks[i]; c.refs.Load() > 1 {
		nc := newChunk[ctrRec](ctrChunkRecs)
		copy(nc.mem, c.mem)
		t.chunks[i] = nc
		c.release()
	}
	return &t.chunks[i].recs[r%ctrChunkRecs]
}

// put stores c (which must be held) as the named counter. The name must
// not change afterwards (the lookup cache may keep it).
func (t *ctrTable) put(name string, c counter) {
	r, tag, ok := t.findW(name)
	if !ok {
		if 4*(t.live+1) > 3*len(t.idx.slots) {
			t.reindex(slotsFor(t.live + 1))
		}
		r = t.alloc()
		*t.wrec(r) = ctrRec{name: t.appendName(name), tag: tag}
		t.idx.insert(uint64(tag), r+1)
		t.live++
		t.lastR, t.lastFound = r, true // findW cached name
	}
	rec := t.wrec(r)
	rec.value, rec.expiry = c.value, c.expiry
	switch {
	case c.actors != nil:
		rec.actors = 1
		t.actors[r] = c.actors
	case rec.actors != 0:
		rec.actors = 0
		delete(t.actors, r)
	}
}

// insertNew adds a counter the caller knows the table does not hold (a
// Restore, which checks the stream's order instead), without looking it up
// and without indexing it: the caller then calls index. It keeps only its
// own copy of the name, which may be in a buffer about to be reused.
func (t *ctrTable) insertNew(name string, c counter) {
	r := t.alloc()
	*t.wrec(r) = ctrRec{name: t.appendName(name), tag: t.hash(name), value: c.value, expiry: c.expiry}
	if c.actors != nil {
		t.rec(r).actors = 1
		t.actors[r] = c.actors
	}
	t.live++
}

// index builds the index of every record, after insertNew.
func (t *ctrTable) index() { t.reindex(slotsFor(t.live)) }

// del removes the named counter; it reports whether there was one.
func (t *ctrTable) del(name string) bool {
	r, tag, ok := t.findW(name)
	if !ok {
		return false
	}
	t.last, t.lastFound = "", false
	t.idx.remove(uint64(tag), r+1, t.hashOf)
	rec := t.wrec(r)
	if rec.actors != 0 {
		delete(t.actors, r)
	}
	t.garbage += 2 + uint64(len(name))
	*rec = ctrRec{}
	t.unused = append(t.unused, r)
	t.live--
	if t.garbage >= arenaBlock && 2*t.garbage > t.aused {
		t.compact()
	}
	if len(t.idx.slots) > minSlots && 8*t.live < len(t.idx.slots) {
		t.reindex(slotsFor(t.live))
	}
	return true
}

func (t *ctrTable) alloc() uint32 {
	if k := len(t.unused); k > 0 {
		r := t.unused[k-1]
		t.unused = t.unused[:k-1]
		return r
	}
	if t.n == uint32(len(t.chunks))*ctrChunkRecs {
		t.chunks = append(t.chunks, newChunk[ctrRec](ctrChunkRecs))
	}
	t.n++
	return t.n - 1
}

// appendName copies name into the arena and returns its offset.
func (t *ctrTable) appendName(name string) uint64 {
	need := uint64(2 + len(name))
	if t.aused == 0 {
		t.aused = arenaStart
	}
	blk := t.aused / arenaBlock
	if t.aused%arenaBlock+need > arenaBlock { // a name never spans blocks
		blk++
		t.aused = blk * arenaBlock
	}
	for uint64(len(t.arena)) <= blk {
		t.arena = append(t.arena, newBlock(arenaBlock))
	}
	off := t.aused
	mem := t.arena[blk].mem[off%arenaBlock:]
	binary.LittleEndian.PutUint16(mem, uint16(len(name)))
	copy(mem[2:], name)
	t.aused += need
	return off
}

// compact rewrites the arena with only the live counters' names. Snapshots
// keep the old blocks they hold.
func (t *ctrTable) compact() {
	old := t.ctrData.arena
	t.arena, t.aused, t.garbage = nil, 0, 0
	oldData := ctrData{arena: old}
	for r := uint32(0); r < t.n; r++ {
		if off := t.rec(r).name; off != 0 {
			nm := oldData.name(off)
			t.wrec(r).name = t.appendName(unsafe.String(unsafe.SliceData(nm), len(nm)))
		}
	}
	for _, b := range old {
		b.release()
	}
}

// reindex rebuilds the index with n slots (a power of two).
func (t *ctrTable) reindex(n int) {
	r := uint32(0)
	t.idx.build(n, t.live, func(int) uint32 {
		for t.rec(r).name == 0 {
			r++ // a free record
		}
		r++
		return r // record r-1, as a ref
	}, func(ref uint32) uint64 { return uint64(t.rec(ref - 1).tag) })
}

// bytes returns about how much memory the table holds.
func (t *ctrTable) bytes() int64 {
	return int64(len(t.chunks))*int64(ctrChunkBytes) + int64(len(t.arena))*arenaBlock + 4*int64(len(t.idx.slots)) + 4*int64(cap(t.unused))
}

// free lets go of the table's memory. The table must not be used after.
func (t *ctrTable) free() {
	for _, c := range t.chunks {
		c.release()
	}
	for _, b := range t.arena {
		b.release()
	}
	t.chunks, t.arena = nil, nil
	t.idx.free()
}

// each calls fn for every counter, in record order.
func (d *ctrData) each(n uint32, actors map[uint32]*actorSet, fn func(name []byte, c counter)) {
	for r := uint32(0); r < n; r++ {
		if rec := d.rec(r); rec.name != 0 {
			fn(d.name(rec.name), ctrOf(rec, actors, r))
		}
	}
}

// sorted returns the records of the live counters in name order.
func (d *ctrData) sorted(n uint32, live int) []uint32 {
	ids := make([]uint32, 0, live)
	for r := uint32(0); r < n; r++ {
		if d.rec(r).name != 0 {
			ids = append(ids, r)
		}
	}
	slices.SortFunc(ids, func(a, b uint32) int { return bytes.Compare(d.name(d.rec(a).name), d.name(d.rec(b).name)) })
	return ids
}

// canonical returns the records of the live counters in snapshot order:
// by FNV-64a of the name, then by name. Any fixed order makes equal states
// write equal bytes; this one sorts on integers, which for millions of
// counters costs a small part of what sorting the names does.
func (d *ctrData) canonical(n uint32, live int) []uint32 {
	type key struct {
		h uint64
		r uint32
	}
	keys := make([]key, 0, live)
	for r := uint32(0); r < n; r++ {
		if rec := d.rec(r); rec.name != 0 {
			nm := d.name(rec.name)
			keys = append(keys, key{h: fnvString(fnvOffset, unsafe.String(unsafe.SliceData(nm), len(nm))), r: r})
		}
	}
	slices.SortFunc(keys, func(a, b key) int {
		switch {
		case a.h < b.h:
			return -1
		case a.h > b.h:
			return 1
		}
		return bytes.Compare(d.name(d.rec(a.r).name), d.name(d.rec(b.r).name))
	})
	ids := make([]uint32, len(keys))
	for i, k := range keys {
		ids[i] = k.r
	}
	return ids
}

// ctrView is a Snapshot's read-only share of a counter table.
type ctrView struct {
	ctrData
	n      uint32
	live   int
	actors map[uint32]*actorSet
	once   sync.Once
}

func (t *ctrTable) view() *ctrView {
	v := &ctrView{ctrData: ctrData{chunks: slices.Clone(t.chunks), arena: slices.Clone(t.arena)}, n: t.n, live: t.live, actors: maps.Clone(t.actors)}
	for _, c := range v.chunks {
		c.retain()
	}
	for _, b := range v.arena {
		b.retain()
	}
	return v
}

func (v *ctrView) release() {
	v.once.Do(func() {
		for _, c := range v.chunks {
			c.release()
		}
		for _, b := range v.arena {
			b.release()
		}
		v.chunks, v.arena = nil, nil
	})
}

package fsm

import (
	"tally/placement"
)

// Split counters.
//
// A hot counter is split into n sub-counters that live on n different
// shards. Sub-counter 0 is the counter itself, on its home shard; sub-counter
// i ≥ 1 is the counter stored under placement.SubName(name, i) on another shard. The
// split factor is state of the home shard's Machine only: other shards just
// hold counters whose names happen to end in "/i" (user names cannot hold
// a '/').
//
// The split factor only grows. Raising it never moves a count: sub-counter
// 0 keeps what the counter had, and the new sub-counters start at 0.
//
// Idempotency keys stay exact across a split by routing: a keyed add goes
// to sub-counter KeyRoute(key, n, slots), and the home shard refuses a keyed
// add whose route is elsewhere (ErrMoved) so that a key is applied in one
// place only. Raising n moves only keys from sub-counter 0 to the new
// sub-counters (KeyRoute of a key whose slot is below the old n does not
// change), so a split runs in three steps:
//
//  1. OpSplitBegin on the home shard sets the pending factor. From then on
//     the home shard refuses keyed adds that the pending factor routes
//     elsewhere, so its dedup records of such keys are complete.
//  2. The records of those keys (MovedKeys) are copied with OpImportKey to
//     the shards of the sub-counters they now route to, so a retry that
//     lands there is answered from the record instead of counting again.
//  3. OpSplitEnd on the home shard makes the new factor the split factor;
//     only then do routers learn it and send writes to the new sub-counters.
//
// Each step is idempotent, so a split interrupted by a crash is finished by
// running the steps again (PendingSplits lists them).
//
// Adds with bounds or a TTL need the whole value in one place, so the home
// shard refuses them on a split counter (ErrSplit), and a counter with an
// expiry cannot be split (ErrNotSplittable). Actor ops stay on the home
// shard, where the actor set is.

// MaxSplit is the largest split factor (and shard count) a split can use.
const MaxSplit = placement.MaxSplit

// maxStoredNameLen bounds the names the Machine stores: a user name of up to
// MaxNameLen bytes, plus a sub-counter suffix "/63".
const maxStoredNameLen = MaxNameLen + 3

// isSubName reports whether stored names a sub-counter (index >= 1) of a
// counter with a valid-length name.
func isSubName(stored string) bool {
	name, i := placement.ParseSubName(stored)
	return i > 0 && len(name) >= 1 && len(name) <= MaxNameLen
}

// KeySlot is the sub-counter index an idempotency key belongs to once a
// counter is split slots ways: a stable hash of the key, mod slots.
func KeySlot(key string, slots int) int {
	if slots <= 1 {
		return 0
	}
	return slotOf(hashKey(key).lo, slots)
}

// slotOf is KeySlot of the key whose keyHash.lo is lo.
func slotOf(lo uint64, slots int) int {
	if slots <= 1 {
		return 0
	}
	return int(lo % uint64(slots))
}

// KeyRoute is the sub-counter a keyed add goes to on a counter split n ways
// (slots = the shard count): the key's slot if that sub-counter exists,
// else sub-counter 0. Raising n changes the route only of keys whose slot
// is at or above the old n, which all went to sub-counter 0 before.
func KeyRoute(key string, n, slots int) int {
	if n <= 1 {
		return 0
	}
	if s := KeySlot(key, slots); s < n {
		return s
	}
	return 0
}

// splitState is a split counter's entry in its home shard's Machine.
type splitState struct {
	n       uint16 // the split factor routers use, >= 1
	pending uint16 // a factor being split to (> n), 0 = none
	slots   uint16 // the shard count keys are hashed over
}

// routeN is the factor the home shard routes keys by: a pending factor
// already counts, so that no key it moves is applied here meanwhile.
func (s splitState) routeN() int { return int(max(s.n, s.pending)) }

// Split returns the split factor of the counter name (1 if it was never
// split) and the factor a split in progress is going to (0 if none).
// Only the counter's home shard knows.
func (m *Machine) Split(name string) (n, pending int) {
	st, ok := m.splits[name]
	if !ok {
		return 1, 0
	}
	return int(st.n), int(st.pending)
}

// PendingSplits returns the counters whose split was begun and not yet
// ended, and the factor each is going to.
func (m *Machine) PendingSplits() map[string]int {
	var out map[string]int
	for name, st := range m.splits {
		if st.pending > st.n {
			if out == nil {
				out = map[string]int{}
			}
			out[name] = int(st.pending)
		}
	}
	return out
}

// SplitCounters returns the number of counters that are split or being split.
func (m *Machine) SplitCounters() int { return len(m.splits) }

// splitOf returns the split factor to report on results for ops on the
// stored name: the home shard's factor for a counter name, 0 (unknown here)
// for a sub-counter name.
func (m *Machine) splitOf(name string) uint16 {
	if st, ok := m.splits[name]; ok {
		return st.n
	}
	return 0
}

// splitRefusal returns the code that refuses op on a split counter's home
// shard, or OK. Ops on sub-counter names and on counters never split pass.
func (m *Machine) splitRefusal(op *Op) Code {
	st, ok := m.splits[op.Name]
	if !ok || op.Kind != OpAdd {
		return OK
	}
	if op.HasMin || op.HasMax || op.TTL != 0 {
		return ErrSplit
	}
	if op.Key != "" && KeyRoute(op.Key, st.routeN(), int(st.slots)) != 0 {
		return ErrMoved
	}
	return OK
}

// splitBegin applies OpSplitBegin.
func (m *Machine) splitBegin(op *Op) Result {
	res := m.current(op.Name, OK)
	c, _ := m.load(op.Name)
	st, ok := m.splits[op.Name]
	if !ok {
		st = splitState{n: 1}
	}
	res.Split = st.n
	want := uint16(op.SplitFactor())
	switch {
	case ok && int64(st.slots) != op.SplitSlots():
		res.Code = ErrNotSplittable // another shard count: keys would route differently
	case want < st.n:
		res.Code = ErrSplitShrink
	case want == st.n:
		// Already split that far: nothing to do.
	case c.expiry != 0:
		res.Code = ErrNotSplittable
	default:
		st.pending = max(st.pending, want)
		st.slots = uint16(op.SplitSlots())
		m.splits[op.Name] = st
	}
	return res
}

// splitEnd applies OpSplitEnd: its factor is the one the caller began and
// whose keys it has imported.
func (m *Machine) splitEnd(op *Op) Result {
	res := m.current(op.Name, OK)
	st, ok := m.splits[op.Name]
	want := uint16(op.SplitFactor())
	if !ok || (want > st.pending && want > st.n) {
		res.Code = ErrNotSplittable // never begun: its keys were not moved
		res.Split = st.n
		return res
	}
	st.n = max(st.n, want)
	if st.pending <= st.n {
		st.pending = 0
	}
	m.splits[op.Name] = st
	res.Split = st.n
	return res
}

// importKey applies OpImportKey: a dedup record for Key, as if the add
// Name += Delta had been applied here with the imported value as its
// Result. A key this Machine already remembers keeps its own record.
func (m *Machine) importKey(op *Op, keyTime int64) Result {
	kh := op.importedKey()
	if _, ok := m.dedup.lookup(kh); !ok {
		add := Op{Kind: OpAdd, Name: op.Name, Delta: op.Delta}
		m.remember(kh, opPrint(&add), &add, Result{Value: op.ImportedValue()}, keyTime)
	}
	return Result{Code: OK}
}

// MovedKeys returns, as OpImportKey ops, the dedup records of the keyed
// adds on the counter name that raising its split factor from n to the
// pending factor moves off sub-counter 0. Records of adds with bounds or a
// TTL are left out: such adds are refused on a split counter, and their
// retries keep going to the home shard, which still answers them. So are
// refused adds (overflow), whose retry may then apply once.
func (m *Machine) MovedKeys(name string) []Op {
	st, ok := m.splits[name]
	if !ok || st.pending <= st.n {
		return nil
	}
	// A plain add on name has this print (see opPrint); one with bounds
	// or a TTL has another.
	plain := opPrint(&Op{Kind: OpAdd, Name: name})
	var out []Op
	t := m.dedup
	for s := t.head; s != t.tail; s++ {
		r := t.rec(s)
		if r.kind != OpAdd || r.print != plain || r.code != OK || r.flags&recExpires != 0 {
			continue
		}
		slot := slotOf(r.key, int(st.slots))
		if slot < int(st.n) || slot >= int(st.pending) {
			continue
		}
		out = append(out, ImportKeyHash(placement.SubName(name, slot), keyHash{lo: r.key, hi: r.key2}, r.delta, r.value))
	}
	return out
}

package fsm

import (
	"maps"
	"math"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

// Code is the outcome of one op.
type Code uint8

const (
	OK           Code = 0
	ErrOverflow  Code = 1 // the op would overflow int64: nothing changes, Value is the current value
	ErrKeyReused Code = 2 // idempotency key seen before with a different op (any field differs): nothing changes, Value is the current value of the op's counter
	// ErrInvalidOp: the op fails Op.Validate (unknown kind, bad name or key
	// length, fields its kind does not use): nothing changes, Value is the
	// current value of the op's counter. DecodeEntry never yields such ops;
	// this only guards Entries built by hand, so that Apply can never create
	// state (say, a 1 KB counter name) that a snapshot of it could not
	// restore.
	ErrInvalidOp Code = 3
	// ErrOutOfBounds: the add's result would fall outside its Min/Max
	// bounds: nothing changes (no expiry is set either), Value is the
	// current value.
	ErrOutOfBounds Code = 4
	// ErrSplit: an add with bounds or a TTL on a split counter's home
	// shard; those need the whole value in one place. Nothing changes.
	ErrSplit Code = 5
	// ErrMoved: a keyed add reached the home shard of a split counter whose
	// key routes to another sub-counter (see KeyRoute); the sender's split
	// factor is out of date. Nothing changes and the key is not
	// remembered; Result.Split has the factor to route by.
	ErrMoved Code = 6
	// ErrNotSplittable: OpSplitBegin on a counter with an expiry or with
	// another shard count, or OpSplitEnd without a begin. Nothing changes.
	ErrNotSplittable Code = 7
	// ErrSplitShrink: OpSplitBegin to a factor below the current one; a
	// split factor only grows. Nothing changes.
	ErrSplitShrink Code = 8
)

// String returns a short lowercase identifier, suitable for logs and JSON.
func (c Code) String() string {
	switch c {
	case OK:
		return "ok"
	case ErrOverflow:
		return "overflow"
	case ErrKeyReused:
		return "key_reused"
	case ErrInvalidOp:
		return "invalid_op"
	case ErrOutOfBounds:
		return "out_of_bounds"
	case ErrSplit:
		return "counter_split"
	case ErrMoved:
		return "moved"
	case ErrNotSplittable:
		return "not_splittable"
	case ErrSplitShrink:
		return "split_shrink"
	}
	return "Code(" + strconv.Itoa(int(c)) + ")"
}

// Result is the outcome of one op.
type Result struct {
	Value     int64 // the counter's value after this op (or current value on error; for a dedup hit, the first result's Value)
	ExpiresAt int64 // the counter's expiry after this op, Unix nanoseconds; 0 = none (for a dedup hit, the first result's)
	Code      Code
	// Changed is set by the actor ops: true if the actor was added to
	// (OpActorAdd) or removed from (OpActorRemove) the set, and so the
	// counter moved by one; false if it already was (or was not) a member.
	// OpDelete sets it if there was a counter to delete, OpExpire if there
	// was a counter to give the expiry. Always false for OpAdd and OpSet
	// and on errors.
	Changed bool
	// Split is the counter's split factor, set by ops (retries included)
	// on a split counter's home shard, 0 elsewhere: how routers learn that
	// a counter was split.
	Split uint16
}

// DefaultDedupTTL is how long an idempotency key is remembered when
// Config.DedupTTL is zero.
const DefaultDedupTTL = 10 * time.Minute

// Config tunes a Machine. Every replica of a shard must use the same Config,
// since the TTL decides which retries are deduplicated.
type Config struct {
	DedupTTL time.Duration // how long an idempotency key is remembered; 0 (or negative) means DefaultDedupTTL
}

// Machine is the state: counters and the dedup table. NOT safe for concurrent
// use (the caller locks), except that the read-only methods (Get, Value,
// IsMember, IsMemberAt, Counters, DedupKeys, LastTime, NextExpiry) and
// Snapshot may run concurrently with each other. The zero value is not
// usable; call New.
//
// The Machine keeps the Name, Key and Actor strings of the ops it applies (as
// map keys and dedup records), so they should not be substrings of large
// buffers; the strings DecodeEntry returns are each their own small
// allocation.
//
// # Clock
//
// Counter expiry runs on the Machine's clock, LastTime(): the largest entry
// Time applied so far. An Apply first advances it to the entry's Time (if
// later), then reclaims the counters whose expiry is <= it, then applies the
// ops, whose TTL windows start at it. Using the largest Time seen rather than
// the entry's own keeps expiry monotonic when the leader's clock steps back:
// a counter that has expired stays expired, and readers (see Get) agree with
// Apply on what has. (Idempotency keys expire on each entry's own Time, as
// they always have.)
type Machine struct {
	ttl      int64     // dedup TTL in nanoseconds, > 0
	ctrs     *ctrTable // only counters held (see counter.held); see counters.go
	lastTime int64

	// expiries is a min-heap of the counters' expiries, ordered by (at,
	// name), with lazy deletion: an item is current if its counter still
	// holds that expiry, and stale items are skipped when popped. Each
	// counter that has an expiry has a current item.
	expiries []expiry

	// gen is bumped by every Snapshot. An actor set made at an older gen may
	// be shared with a Snapshot, so it is copied before it is changed (copy
	// on write); sets made since are changed in place. It is atomic because
	// Snapshot is a read as far as callers are concerned and may run under a
	// read lock, concurrently with other reads or Snapshots.
	gen atomic.Uint64

	// dedup remembers the idempotency keys applied within the TTL (see
	// dedup.go). The pointer never changes (Restore swaps what it points
	// to), so a cleanup can free its off-heap memory with the Machine.
	dedup *dedupTable

	// splits holds the split state of the counters whose home shard this
	// is and that were ever split (see split.go). Entries are never
	// removed: a split factor only grows.
	splits map[string]splitState

	// The changes of the current Apply, when tracked (see changes.go);
	// changeAt indexes them by name once they are many.
	track    bool
	changes  []Change
	changeAt map[string]int
}

// counter is one counter's state. A counter is held while it has a non-zero
// value, an actor or an expiry; a counter with none of these is the same as
// an absent one and is deleted.
type counter struct {
	value  int64
	expiry int64     // Unix nanoseconds, 0 = none
	actors *actorSet // nil when empty
}

func (c *counter) held() bool { return c.value != 0 || c.actors != nil || c.expiry != 0 }

// expired reports whether c has an expiry that is due at now. An expired
// counter is the same as an absent one.
func (c *counter) expired(now int64) bool { return c.expiry != 0 && c.expiry <= now }

// actorSet is a counter's set of actors, never empty. Actors of up to 15
// bytes (most ids) are packed, with their length, into a 16-byte array key:
// no string allocation per actor, and a map without pointers, which the GC
// does not scan. (A byte array rather than [2]uint64: with alignment 1 a
// slot takes 17 bytes, not 24, and a full 1024-slot table fits its size
// class exactly; about 24 to 41 bytes per actor in all.) Longer actors are
// kept as strings, the decoded op's own allocation.
type actorSet struct {
	short map[actorKey]struct{} // nil if none
	long  map[string]struct{}   // nil if none
	gen   uint64                // Machine.gen when made
}

// actorKey is a packed actor of up to maxShortActor bytes: its bytes, zero
// padded, then its length in the last byte.
type actorKey [16]byte

const maxShortActor = len(actorKey{}) - 1

func packActor(a string) (actorKey, bool) {
	var k actorKey
	if len(a) > maxShortActor {
		return k, false
	}
	copy(k[:], a)
	k[maxShortActor] = byte(len(a))
	return k, true
}

func (k *actorKey) String() string { return string(k[:k[maxShortActor]]) }

func (s *actorSet) len() int { return len(s.short) + len(s.long) }

func (s *actorSet) has(a string) bool {
	if k, ok := packActor(a); ok {
		_, ok = s.short[k]
		return ok
	}
	_, ok := s.long[a]
	return ok
}

func (s *actorSet) add(a string) {
	if k, ok := packActor(a); ok {
		if s.short == nil {
			s.short = make(map[actorKey]struct{}, 1)
		}
		s.short[k] = struct{}{}
		return
	}
	if s.long == nil {
		s.long = make(map[string]struct{}, 1)
	}
	s.long[a] = struct{}{}
}

func (s *actorSet) remove(a string) {
	if k, ok := packActor(a); ok {
		delete(s.short, k)
		if len(s.short) == 0 {
			s.short = nil
		}
		return
	}
	delete(s.long, a)
	if len(s.long) == 0 {
		s.long = nil
	}
}

// sorted returns the actors in increasing byte order.
func (s *actorSet) sorted() []string {
	all := make([]string, 0, s.len())
	for k := range s.short {
		all = append(all, k.String())
	}
	for a := range s.long {
		all = append(all, a)
	}
	slices.Sort(all)
	return all
}

// expiry is an item of Machine.expiries.
type expiry struct {
	at   int64
	name string
}

func (a *expiry) less(b *expiry) bool {
	return a.at < b.at || (a.at == b.at && a.name < b.name)
}

// New returns an empty Machine.
func New(cfg Config) *Machine {
	ttl := int64(cfg.DedupTTL)
	if ttl <= 0 {
		ttl = int64(DefaultDedupTTL)
	}
	m := &Machine{
		ttl:    ttl,
		ctrs:   newCtrTable(),
		dedup:  newDedupTable(),
		splits: make(map[string]splitState),
	}
	runtime.AddCleanup(m, (*dedupTable).free, m.dedup)
	runtime.AddCleanup(m, (*ctrTable).free, m.ctrs)
	return m
}

// Apply applies e and returns one Result per op, in order.
func (m *Machine) Apply(e *Entry) []Result {
	return m.ApplyTo(make([]Result, 0, len(e.Ops)), e)
}

// ApplyTo is Apply appending to dst, so a caller can reuse one slice. With a
// reused dst, applying ops allocates nothing beyond map, ring and heap growth
// and new actor sets.
func (m *Machine) ApplyTo(dst []Result, e *Entry) []Result {
	m.resetChanges()
	m.expire(e.Time)
	if e.Time > m.lastTime {
		m.lastTime = e.Time
	}
	m.reclaim(m.lastTime)
	for i := range e.Ops {
		dst = append(dst, m.apply(&e.Ops[i], e.Time))
	}
	return dst
}

// apply applies one op. keyTime is the entry's Time, which dedup records
// are stamped with; counters run on m.lastTime.
func (m *Machine) apply(op *Op, keyTime int64) Result {
	if op.Validate() != nil {
		return m.current(op.Name, ErrInvalidOp)
	}
	switch op.Kind {
	case OpSplitBegin:
		return m.splitBegin(op)
	case OpSplitEnd:
		return m.splitEnd(op)
	case OpImportKey:
		return m.importKey(op, keyTime)
	case OpDelete:
		return m.deleteCounter(op)
	case OpSet:
		return m.setCounter(op)
	case OpExpire:
		return m.expireCounter(op)
	}
	var kh keyHash
	var print uint64
	if op.Key != "" {
		kh, print = hashKey(op.Key), opPrint(op)
		if seq, ok := m.dedup.lookup(kh); ok {
			if m.dedup.rec(seq).matches(op, print) {
				// A retry: answer as the first time, change nothing; but say
				// whether the counter is split now, or a router that does not
				// know it would call the answer exact.
				res := m.dedup.result(seq)
				res.Split = m.splitOf(op.Name)
				return res
			}
			return m.current(op.Name, ErrKeyReused)
		}
	}
	if code := m.splitRefusal(op); code != OK {
		res := m.current(op.Name, code)
		res.Split = m.splitOf(op.Name)
		return res // not remembered: a retry routed right may still apply
	}
	var res Result
	if op.Kind == OpAdd {
		res = m.add(op)
	} else {
		res = m.actor(op)
	}
	res.Split = m.splitOf(op.Name)
	if op.Key != "" {
		// Remembered even on ErrOverflow and ErrOutOfBounds, so a retry
		// gets the same answer even if the counter has since moved enough
		// for the op to fit.
		m.remember(kh, print, op, res, keyTime)
	}
	return res
}

// current is the Result of an op refused without looking at its fields.
func (m *Machine) current(name string, code Code) Result {
	v, exp := m.Get(name, m.lastTime)
	return Result{Value: v, ExpiresAt: exp, Code: code}
}

// load returns the named counter as Apply sees it now, and whether it is
// held: the zero counter and false if it is absent or expired.
func (m *Machine) load(name string) (counter, bool) {
	c, ok := m.ctrs.getW(name)
	if ok && c.expired(m.lastTime) {
		// Only possible for a counter made in this Apply whose expiry
		// saturated at math.MaxInt64 = lastTime; reclaim drops it later.
		return counter{}, false
	}
	return c, ok
}

// store saves c as the named counter, or deletes it if it holds nothing.
// isNew says c's expiry was just set, so the heap needs an item for it.
func (m *Machine) store(name string, c counter, isNew bool) {
	if !c.held() {
		m.ctrs.del(name)
		return
	}
	m.ctrs.put(name, c)
	if isNew && c.expiry != 0 {
		m.push(expiry{at: c.expiry, name: name})
	}
}

func (m *Machine) add(op *Op) Result {
	c, held := m.load(op.Name)
	cur := c.value
	v := cur + op.Delta
	refused := Result{Value: cur, ExpiresAt: c.expiry}
	switch {
	case (op.Delta > 0 && v < cur) || (op.Delta < 0 && v > cur):
		refused.Code = ErrOverflow
		return refused
	case (op.HasMin && v < op.Min) || (op.HasMax && v > op.Max):
		refused.Code = ErrOutOfBounds
		return refused
	}
	m.note(op.Name, cur, v)
	c.value = v
	// A counter that was absent (or expired, which load made absent) starts
	// a new window; one that is held keeps its expiry, or its lack of one.
	isNew := op.TTL > 0 && !held
	if isNew {
		c.expiry = expiryAt(m.lastTime, op.TTL)
	}
	m.store(op.Name, c, isNew)
	return Result{Value: v, ExpiresAt: c.expiry, Code: OK}
}

// expiryAt returns now + ttl milliseconds, saturating at math.MaxInt64.
// now is m.lastTime, which is >= 0, so the result is > 0: it never collides
// with 0, "no expiry".
func expiryAt(now, ttlMillis int64) int64 {
	d := ttlMillis * int64(time.Millisecond) // <= MaxTTL ms: cannot overflow
	if now > math.MaxInt64-d {
		return math.MaxInt64
	}
	return now + d
}

func (m *Machine) actor(op *Op) Result {
	c, _ := m.load(op.Name)
	member := c.actors != nil && c.actors.has(op.Actor)
	if member == (op.Kind == OpActorAdd) {
		return Result{Value: c.value, ExpiresAt: c.expiry, Code: OK} // already so: nothing to do
	}
	delta := int64(1)
	if op.Kind == OpActorRemove {
		delta = -1
	}
	v := c.value + delta
	if (delta > 0 && v < c.value) || (delta < 0 && v > c.value) {
		return Result{Value: c.value, ExpiresAt: c.expiry, Code: ErrOverflow}
	}
	m.note(op.Name, c.value, v)
	c.value = v
	if op.Kind == OpActorAdd {
		m.own(&c).add(op.Actor)
	} else if c.actors.len() == 1 {
		c.actors = nil // the last one: drop the set (and its memory) entirely
	} else {
		m.own(&c).remove(op.Actor)
	}
	m.store(op.Name, c, false)
	return Result{Value: v, ExpiresAt: c.expiry, Code: OK, Changed: true}
}

// own makes c's actor set safe to change, creating it or copying a set a
// Snapshot may share, and returns it.
func (m *Machine) own(c *counter) *actorSet {
	gen := m.gen.Load()
	switch {
	case c.actors == nil:
		c.actors = &actorSet{gen: gen}
	case c.actors.gen != gen:
		c.actors = &actorSet{short: maps.Clone(c.actors.short), long: maps.Clone(c.actors.long), gen: gen}
	}
	return c.actors
}

// reclaim drops the counters whose expiry is <= now, popping the heap's due
// items: O(expired) per Apply, plus the stale items it skips. The order
// items are popped in does not matter (each pop only touches its own
// counter), so replicas with differently shaped heaps still agree.
func (m *Machine) reclaim(now int64) {
	n := 0
	for len(m.expiries) > 0 && m.expiries[0].at <= now {
		it := m.pop()
		if c, ok := m.ctrs.get(it.name); ok && c.expiry == it.at {
			m.note(it.name, c.value, 0)
			m.ctrs.del(it.name)
		}
		n++
	}
	// Give the memory of a burst back once the heap is under 1/4 full.
	if n > 0 && cap(m.expiries) > 128 && len(m.expiries) < cap(m.expiries)/4 {
		m.expiries = append(make([]expiry, 0, 2*len(m.expiries)), m.expiries...)
	}
}

func (m *Machine) push(it expiry) {
	h := append(m.expiries, it)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if !h[i].less(&h[p]) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
	m.expiries = h
}

func (m *Machine) pop() expiry {
	h := m.expiries
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = expiry{} // drop the name for the GC
	h = h[:last]
	for i := 0; ; {
		l := 2*i + 1
		if l >= len(h) {
			break
		}
		c := l
		if r := l + 1; r < len(h) && h[r].less(&h[l]) {
			c = r
		}
		if !h[c].less(&h[i]) {
			break
		}
		h[i], h[c] = h[c], h[i]
		i = c
	}
	m.expiries = h
	return top
}

// remember records the first application of a keyed op.
func (m *Machine) remember(kh keyHash, print uint64, op *Op, res Result, now int64) {
	r := dedupRec{
		key: kh.lo, key2: kh.hi, print: print, delta: op.Delta, time: now,
		value: res.Value, code: res.Code, kind: op.Kind,
	}
	if res.Changed {
		r.flags |= recChanged
	}
	m.dedup.push(r, res.ExpiresAt)
}

// expire forgets keys whose time+TTL <= now, oldest first.
func (m *Machine) expire(now int64) {
	if now < math.MinInt64+m.ttl {
		return // now-ttl would underflow: nothing can have expired yet
	}
	m.dedup.expire(now - m.ttl) // time+ttl <= now, rearranged so it cannot overflow
}

// Get returns the named counter's value and expiry (Unix nanoseconds, 0 =
// none) as of time now: a counter whose expiry is <= now reads as absent,
// value 0 and no expiry, even if the Machine still holds it (it is only
// reclaimed by the next Apply).
//
// Reads happen between Applies, while real time moves on, so the caller
// passes now = max(LastTime(), its own wall clock in Unix nanoseconds).
// Never less than LastTime(): a counter Apply has found expired must not
// read as live again. The wall clock lets a read see a window end before the
// next entry is applied; if the clock is ahead of the leader's, such a read
// is early by that much, and a write may still find the counter live.
func (m *Machine) Get(name string, now int64) (value int64, expiresAt int64) {
	c, _ := m.ctrs.get(name)
	if c.expired(now) {
		return 0, 0
	}
	return c.value, c.expiry
}

// Value returns the value of the named counter as of LastTime(), 0 for an
// unknown or expired counter. See Get for reads at a later time.
func (m *Machine) Value(name string) int64 {
	v, _ := m.Get(name, m.lastTime)
	return v
}

// IsMember reports whether actor is in the named counter's actor set, as of
// LastTime(). See IsMemberAt.
func (m *Machine) IsMember(name, actor string) bool {
	return m.IsMemberAt(name, actor, m.lastTime)
}

// IsMemberAt reports whether actor is in the named counter's actor set as of
// time now (an expired counter has none); pass now as for Get.
func (m *Machine) IsMemberAt(name, actor string, now int64) bool {
	c, _ := m.ctrs.get(name)
	return !c.expired(now) && c.actors != nil && c.actors.has(actor)
}

// NextExpiry returns the earliest counter expiry the Machine holds (Unix
// nanoseconds), or 0 if none. The Machine reclaims an expired counter's
// memory only in an Apply with a Time at or after its expiry, so on an idle
// shard the leader can propose an empty entry at this time to do it. It may
// be early (an item for a counter since dropped), never late.
func (m *Machine) NextExpiry() int64 {
	if len(m.expiries) == 0 {
		return 0
	}
	return m.expiries[0].at
}

// NextKeyExpiry returns when the oldest remembered idempotency key expires
// (Unix nanoseconds), or 0 if none is: an Apply with a Time at or after it
// forgets it (and any due behind it), so an idle shard's leader can propose
// an empty entry then.
func (m *Machine) NextKeyExpiry() int64 {
	t := m.dedup
	if t.head == t.tail {
		return 0
	}
	at := t.rec(t.head).time
	if at > math.MaxInt64-m.ttl {
		return math.MaxInt64
	}
	return at + m.ttl
}

// Counters returns the number of counters held: those with a non-zero
// value, an actor or an expiry (including expired ones the next Apply will
// reclaim).
func (m *Machine) Counters() int { return m.ctrs.len() }

// CounterBytes returns about how many bytes the counter table holds.
func (m *Machine) CounterBytes() int64 { return m.ctrs.bytes() }

// DedupKeys returns the number of idempotency keys remembered.
func (m *Machine) DedupKeys() int { return m.dedup.len() }

// DedupBytes returns about how many bytes the dedup table holds, for a
// proposer that caps it (Apply itself never refuses a key: it must apply
// what the log says, the same on every replica).
func (m *Machine) DedupBytes() int64 { return m.dedup.bytes() }

// HasKey reports whether the idempotency key is remembered: whether an op
// carrying it would be answered from the dedup table (a retry, or a reuse)
// rather than applied. A proposer that caps the table admits such ops.
func (m *Machine) HasKey(key string) bool {
	_, ok := m.dedup.lookup(hashKey(key))
	return ok
}

// LastTime returns the largest entry Time applied so far (0 before any).
func (m *Machine) LastTime() int64 { return m.lastTime }

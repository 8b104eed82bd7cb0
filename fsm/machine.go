package fsm

import (
	"math"
	"math/bits"
	"strconv"
	"time"
)

// Code is the outcome of one op.
type Code uint8

const (
	OK           Code = 0
	ErrOverflow  Code = 1 // the add would overflow int64: nothing changes, Value is the current value
	ErrKeyReused Code = 2 // idempotency key seen before with a different op (kind, name or delta): nothing changes, Value is the current value of the op's counter
	// ErrInvalidOp: the op fails Op.Validate (unknown kind, bad name or key
	// length): nothing changes, Value is the current value of the op's
	// counter. DecodeEntry never yields such ops; this only guards Entries
	// built by hand, so that Apply can never create state (say, a 1 KB
	// counter name) that a snapshot of it could not restore.
	ErrInvalidOp Code = 3
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
	}
	return "Code(" + strconv.Itoa(int(c)) + ")"
}

// Result is the outcome of one op.
type Result struct {
	Value int64 // the counter's value after this op (or current value on error; for a dedup hit, the first result's Value)
	Code  Code
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
// use (the caller locks). The zero value is not usable; call New.
//
// The Machine keeps the Name and Key strings of the ops it applies (as map
// keys and dedup records), so they should not be substrings of large buffers;
// the strings DecodeEntry returns are each their own small allocation.
type Machine struct {
	ttl      int64            // dedup TTL in nanoseconds, > 0
	counters map[string]int64 // only non-zero counters: 0 and absent mean the same
	lastTime int64

	// The dedup table. Records live in ring, a power-of-two circular buffer
	// kept in insertion order, so expiry only ever pops from the front and
	// costs O(expired) per Apply. Records are numbered by a sequence number
	// that never changes (the live ones are [head, tail)), and keys maps an
	// idempotency key to its record's number: the ring can then grow or
	// shrink without rewriting the map.
	keys       map[string]uint64
	ring       []dedupRec
	head, tail uint64
}

// dedupRec remembers the first application of a keyed op. Fields are ordered
// to keep it at 64 bytes.
type dedupRec struct {
	key   string
	name  string
	delta int64
	time  int64 // Time of the entry that first carried the key
	value int64 // the first Result
	code  Code
	kind  OpKind
}

func (r *dedupRec) result() Result { return Result{Value: r.value, Code: r.code} }

// minRing is the smallest ring allocated; below it, shrinking isn't worth it.
const minRing = 64

// New returns an empty Machine.
func New(cfg Config) *Machine {
	ttl := int64(cfg.DedupTTL)
	if ttl <= 0 {
		ttl = int64(DefaultDedupTTL)
	}
	return &Machine{
		ttl:      ttl,
		counters: make(map[string]int64),
		keys:     make(map[string]uint64),
	}
}

// Apply applies e and returns one Result per op, in order.
func (m *Machine) Apply(e *Entry) []Result {
	return m.ApplyTo(make([]Result, 0, len(e.Ops)), e)
}

// ApplyTo is Apply appending to dst, so a caller can reuse one slice. With a
// reused dst, applying ops allocates nothing beyond map and ring growth.
func (m *Machine) ApplyTo(dst []Result, e *Entry) []Result {
	m.expire(e.Time)
	if e.Time > m.lastTime {
		m.lastTime = e.Time
	}
	for i := range e.Ops {
		dst = append(dst, m.apply(&e.Ops[i], e.Time))
	}
	return dst
}

func (m *Machine) apply(op *Op, now int64) Result {
	if op.Validate() != nil {
		return Result{Value: m.counters[op.Name], Code: ErrInvalidOp}
	}
	if op.Key != "" {
		if seq, ok := m.keys[op.Key]; ok {
			r := m.rec(seq)
			if r.kind == op.Kind && r.name == op.Name && r.delta == op.Delta {
				return r.result() // a retry: answer as the first time, add nothing
			}
			return Result{Value: m.counters[op.Name], Code: ErrKeyReused}
		}
	}
	res := m.add(op.Name, op.Delta)
	if op.Key != "" {
		// Remembered even on ErrOverflow, so a retry gets the same answer
		// even if the counter has since moved enough for the add to fit.
		m.remember(op, res, now)
	}
	return res
}

func (m *Machine) add(name string, delta int64) Result {
	cur := m.counters[name]
	v := cur + delta
	if (delta > 0 && v < cur) || (delta < 0 && v > cur) {
		return Result{Value: cur, Code: ErrOverflow}
	}
	if v == 0 {
		delete(m.counters, name)
	} else {
		m.counters[name] = v
	}
	return Result{Value: v, Code: OK}
}

func (m *Machine) rec(seq uint64) *dedupRec {
	return &m.ring[seq&uint64(len(m.ring)-1)]
}

func (m *Machine) remember(op *Op, res Result, now int64) {
	if m.tail-m.head == uint64(len(m.ring)) {
		m.resize(max(minRing, 2*len(m.ring)))
	}
	*m.rec(m.tail) = dedupRec{
		key:   op.Key,
		name:  op.Name,
		delta: op.Delta,
		time:  now,
		value: res.Value,
		code:  res.Code,
		kind:  op.Kind,
	}
	m.keys[op.Key] = m.tail
	m.tail++
}

// expire forgets keys whose time+TTL <= now, oldest first. It stops at the
// first record still live: a record behind it with an earlier time (the
// leader's clock stepped back) waits its turn, which is a little late but the
// same on every replica.
func (m *Machine) expire(now int64) {
	if now < math.MinInt64+m.ttl {
		return // now-ttl would underflow: nothing can have expired yet
	}
	cutoff := now - m.ttl // time+ttl <= now, rearranged so it cannot overflow
	n := 0
	for ; m.head != m.tail; m.head++ {
		r := m.rec(m.head)
		if r.time > cutoff {
			break
		}
		delete(m.keys, r.key)
		*r = dedupRec{} // drop the strings for the GC
		n++
	}
	// After a burst of keys, give the memory back once the ring is less than
	// 1/8 full, shrinking it to 1/4 full. Go maps never shrink, so rebuild keys
	// at the same time. Both cost O(live), which is amortized over the pushes
	// that grew the ring, since each shrink at least halves it.
	if live := int(m.tail - m.head); n > 0 && len(m.ring) > minRing && live < len(m.ring)/8 {
		m.resize(ringSize(4 * live))
		m.keys = make(map[string]uint64, live)
		for s := m.head; s != m.tail; s++ {
			m.keys[m.rec(s).key] = s
		}
	}
}

// ringSize returns the ring length for n records: a power of two >= n, at
// least minRing.
func ringSize(n int) int {
	if n <= minRing {
		return minRing
	}
	return 1 << bits.Len(uint(n-1))
}

// resize moves the live records to a ring of size n (a power of two holding
// them all). Sequence numbers don't change, so keys stays valid.
func (m *Machine) resize(n int) {
	ring := make([]dedupRec, n)
	for s := m.head; s != m.tail; s++ {
		ring[s&uint64(n-1)] = *m.rec(s)
	}
	m.ring = ring
}

// Value returns the value of the named counter, 0 for an unknown counter.
func (m *Machine) Value(name string) int64 { return m.counters[name] }

// Counters returns the number of non-zero counters held.
func (m *Machine) Counters() int { return len(m.counters) }

// DedupKeys returns the number of idempotency keys remembered.
func (m *Machine) DedupKeys() int { return int(m.tail - m.head) }

// LastTime returns the largest entry Time applied so far (0 before any).
func (m *Machine) LastTime() int64 { return m.lastTime }

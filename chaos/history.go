// Package chaos runs a workload against a tally cluster while a nemesis
// injects faults (SIGKILL, SIGSTOP, restarts, transport partitions,
// snapshot installs), records every operation, and checks the history:
// per-counter linearizability (porcupine), counter bounds, monotonic reads
// and replica agreement.
package chaos

import (
	"math"
	"sync"
	"time"
)

// Kind is what an operation did.
type Kind uint8

const (
	Add  Kind = iota // add Delta (negative for a decrement); Value is the counter after it
	Read             // linearizable read; Value is what it saw
)

// Outcome is how an operation ended. Operations that definitely did not
// happen (a 4xx, a 503 that applied nothing, a read that got no answer)
// are not recorded, only counted: they constrain nothing.
type Outcome uint8

const (
	OK      Outcome = iota
	Unknown         // a write that may or may not have applied
)

// Op is one recorded operation. Call and Return are monotonic nanoseconds
// since the history began; an Unknown op has Return = math.MaxInt64 (it
// may take effect at any time after its call).
type Op struct {
	Client  int     `json:"client"`
	Counter string  `json:"counter"`
	Kind    Kind    `json:"kind"`
	Delta   int64   `json:"delta,omitempty"`
	Key     string  `json:"key,omitempty"`
	Value   int64   `json:"value"`
	Outcome Outcome `json:"outcome"`
	Call    int64   `json:"call"`
	Return  int64   `json:"return"`
	// Resolved marks an op that first ended unknown and was settled later
	// by a retry with the same idempotency key: it then counts as OK, with
	// Return the retry's completion.
	Resolved bool `json:"resolved,omitempty"`
	// Inexact marks an add on a split counter: its Value is the value of
	// the sub-counter it landed on, not the counter's, so only its effect
	// (Delta, between Call and Return) is checked.
	Inexact bool `json:"inexact,omitempty"`
	// RESP marks an op sent over the Redis protocol (and, if it was
	// settled, settled over it too).
	RESP bool `json:"resp,omitempty"`
}

// History records operations from many goroutines.
type History struct {
	start time.Time

	mu           sync.Mutex
	ops          []Op
	failed       int
	failedWrites int
	keysFull     int // of the failed writes, those refused with keys_full
}

// NewHistory starts a history; timestamps are measured from now with the
// monotonic clock.
func NewHistory() *History { return &History{start: time.Now()} }

// Now is the current timestamp.
func (h *History) Now() int64 { return int64(time.Since(h.start)) }

// Record adds a completed or unknown op and returns its index.
func (h *History) Record(op Op) int {
	if op.Outcome == Unknown {
		op.Return = math.MaxInt64
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ops = append(h.ops, op)
	return len(h.ops) - 1
}

// Failed counts an op that definitely did not happen.
func (h *History) Failed(k Kind) {
	h.mu.Lock()
	h.failed++
	if k == Add {
		h.failedWrites++
	}
	h.mu.Unlock()
}

// KeysFull counts a write refused because the node's idempotency key table
// was full (keys_full, -OOM): one that did not happen, counted by Failed
// too.
func (h *History) KeysFull() {
	h.mu.Lock()
	h.keysFull++
	h.mu.Unlock()
}

// KeysFullWrites counts the writes refused with keys_full.
func (h *History) KeysFullWrites() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.keysFull
}

// FailedWrites counts the failed ops that were writes.
func (h *History) FailedWrites() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.failedWrites
}

// Resolve settles the unknown op i: a retry with its key answered value at
// time ret.
func (h *History) Resolve(i int, value, ret int64, inexact bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	op := &h.ops[i]
	op.Value, op.Return, op.Outcome, op.Resolved, op.Inexact = value, ret, OK, true, inexact
}

// Ops returns a copy of the recorded ops and the count of failed ones.
func (h *History) Ops() ([]Op, int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Op(nil), h.ops...), h.failed
}

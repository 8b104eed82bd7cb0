package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"tally/internal/respclient"
)

// The workload's Redis-protocol clients: their increments are
// TALLY.INCRBY name delta IDEMPOTENCY key, their reads GET, each sent to a
// random node's RESP port and recorded in the same history as the HTTP
// clients' ops, so the RESP front door is held to the same checks.

// respOutcome is what a RESP reply says of the op that got it.
type respOutcome uint8

const (
	respOK       respOutcome = iota
	respFailed               // definitely not applied
	respUnknown              // may or may not have applied
	respKeysFull             // not applied: the node's idempotency key table is full
	respBug                  // an answer tally should never give here
)

// classifyAdd maps a TALLY.INCRBY reply (or its failure) to an outcome:
// an integer is the counter's value right after the add; TRYAGAIN and OOM
// (the key table is full) applied nothing; UNKNOWN may have committed (a retry with the same id tells);
// a connection that failed after the command was handed to it may have
// delivered it, one that failed before cannot have. Anything else is a
// bug, and its text says which.
func classifyAdd(r respclient.Reply, err error) (int64, respOutcome, string) {
	var se respclient.ServerError
	var ce *respclient.ConnError
	switch {
	case err == nil && r.Kind == respclient.Integer:
		return r.Int, respOK, ""
	case err == nil:
		return 0, respBug, fmt.Sprintf("TALLY.INCRBY answered a %s (%q), not an integer", r.Kind, r.Str)
	case errors.As(err, &se) && se.Code() == "TRYAGAIN":
		return 0, respFailed, ""
	case errors.As(err, &se) && se.Code() == "OOM":
		return 0, respKeysFull, ""
	case errors.As(err, &se) && se.Code() == "UNKNOWN":
		return 0, respUnknown, ""
	case errors.As(err, &se):
		return 0, respBug, "TALLY.INCRBY answered -" + se.Error()
	case errors.As(err, &ce) && ce.Sent:
		return 0, respUnknown, ""
	case errors.As(err, &ce):
		return 0, respFailed, ""
	}
	return 0, respBug, "TALLY.INCRBY: " + err.Error()
}

// classifyRead maps a GET reply: a bulk string holding an integer is the
// value; a read that got no answer constrains nothing (failed), whatever
// the reason the node gave; anything else is a bug.
func classifyRead(r respclient.Reply, err error) (int64, respOutcome, string) {
	var se respclient.ServerError
	var ce *respclient.ConnError
	switch {
	case err == nil && r.Kind == respclient.Bulk && !r.Nil:
		v, perr := strconv.ParseInt(r.Str, 10, 64)
		if perr != nil {
			return 0, respBug, fmt.Sprintf("GET answered %q, not an integer", r.Str)
		}
		return v, respOK, ""
	case err == nil:
		return 0, respBug, fmt.Sprintf("GET answered a %s (nil %v, %q), not a bulk string", r.Kind, r.Nil, r.Str)
	case errors.As(err, &se) && (se.Code() == "TRYAGAIN" || se.Code() == "UNKNOWN"):
		return 0, respFailed, ""
	case errors.As(err, &se):
		return 0, respBug, "GET answered -" + se.Error()
	case errors.As(err, &ce):
		return 0, respFailed, ""
	}
	return 0, respBug, "GET: " + err.Error()
}

func incrArgs(op Op) []string {
	return []string{"TALLY.INCRBY", op.Counter, strconv.FormatInt(op.Delta, 10), "IDEMPOTENCY", op.Key}
}

// respConn is one RESP client's connection: to a random node, replaced
// by one to another random node after a failure and every so many ops,
// so every node's RESP port gets traffic.
type respConn struct {
	addrs   []string
	rng     *rand.Rand
	timeout time.Duration // per op: one that takes longer ends unknown (or failed)
	c       *respclient.Conn
	uses    int
}

const respOpsPerConn = 50

func (rc *respConn) do(ctx context.Context, args ...string) (respclient.Reply, error) {
	if rc.c != nil && rc.uses >= respOpsPerConn {
		rc.close()
	}
	if rc.c == nil {
		c, err := respclient.Dial(ctx, rc.addrs[rc.rng.IntN(len(rc.addrs))], time.Second, respclient.Limits{})
		if err != nil {
			return respclient.Reply{}, err
		}
		rc.c, rc.uses = c, 0
	}
	rc.uses++
	ctx, cancel := context.WithTimeout(ctx, rc.timeout)
	defer cancel()
	r, err := rc.c.Do(ctx, args...)
	var ce *respclient.ConnError
	if errors.As(err, &ce) {
		rc.c = nil // Do closed it
	}
	return r, err
}

func (rc *respConn) close() {
	if rc.c != nil {
		rc.c.Close()
		rc.c = nil
	}
}

// addRESP sends one keyed increment over RESP and records it. The ctx is
// only for stopping: a write cut off by Stop after it was sent ends
// unknown and is resolved like any other.
func (w *Workload) addRESP(ctx context.Context, rc *respConn, id int, name string, delta int64, key string) {
	op := Op{Client: id, Counter: name, Kind: Add, Delta: delta, Key: key, RESP: true, Inexact: w.Unit[name]}
	op.Call = w.h.Now()
	r, err := rc.do(ctx, incrArgs(op)...)
	op.Return = w.h.Now()
	v, outcome, bug := classifyAdd(r, err)
	switch outcome {
	case respOK:
		op.Value = v
		w.h.Record(op)
		w.acks.Add(1)
	case respUnknown:
		op.Outcome = Unknown
		w.pending.Store(w.h.Record(op), op)
	case respFailed, respKeysFull:
		w.h.Failed(Add)
		w.respFailed.Add(1)
		if outcome == respKeysFull {
			w.h.KeysFull()
		}
	default:
		// The round fails on the answer itself; the write stays in the
		// history as one that may have applied, so the other checks
		// still judge the rest soundly.
		w.problem("client %d: %s", id, bug)
		op.Outcome = Unknown
		w.h.Record(op)
	}
}

func (w *Workload) readRESP(ctx context.Context, rc *respConn, id int, name string) {
	call := w.h.Now()
	r, err := rc.do(ctx, "GET", name)
	ret := w.h.Now()
	v, outcome, bug := classifyRead(r, err)
	switch outcome {
	case respOK:
		w.h.Record(Op{Client: id, Counter: name, Kind: Read, Value: v, Call: call, Return: ret, RESP: true})
	case respBug:
		w.problem("client %d: %s", id, bug)
	default:
		w.h.Failed(Read)
	}
}

// resolveRESP retries an unknown RESP write with its idempotency id, over
// RESP, until an answer settles it or within passes: the dedup path of
// the RESP front door answers the first application's result.
func (w *Workload) resolveRESP(ctx context.Context, rc *respConn, op Op, within time.Duration) (int64, bool) {
	deadline := time.Now().Add(within)
	for {
		v, outcome, bug := classifyAdd(rc.do(ctx, incrArgs(op)...))
		switch outcome {
		case respOK:
			return v, true
		case respBug:
			w.problem("settling client %d's write %s: %s", op.Client, op.Key, bug)
			return 0, false
		}
		if time.Now().After(deadline) || pause(ctx, 20*time.Millisecond) != nil {
			return 0, false
		}
	}
}

// problem records an answer that means a bug; the round fails with it.
func (w *Workload) problem(format string, a ...any) {
	w.probMu.Lock()
	defer w.probMu.Unlock()
	const keep = 20
	if len(w.problems) < keep {
		w.problems = append(w.problems, "RESP: "+fmt.Sprintf(format, a...))
	} else {
		w.moreProblems++
	}
}

// Problems lists the answers that meant a bug.
func (w *Workload) Problems() []string {
	w.probMu.Lock()
	defer w.probMu.Unlock()
	out := append([]string(nil), w.problems...)
	if w.moreProblems > 0 {
		out = append(out, fmt.Sprintf("RESP: %d more such answers", w.moreProblems))
	}
	return out
}

package node

import (
	"errors"
	"fmt"

	"tally/fsm"
	"tally/shard"
)

// Code names why an operation of the core failed. Protocol adapters map
// codes to their own answers (httpapi to a status and the code itself as
// the JSON error code, the RESP listener to an error reply); the strings
// are the HTTP API's error codes.
type Code string

const (
	// Bad input: the request was malformed; nothing was tried.
	CodeBadName      Code = "bad_name"
	CodeBadActor     Code = "bad_actor"
	CodeBadKey       Code = "bad_key"
	CodeBadDelta     Code = "bad_delta"
	CodeBadBounds    Code = "bad_bounds"
	CodeBadTTL       Code = "bad_ttl"
	CodeBadSplit     Code = "bad_split"
	CodeTooManyNames Code = "too_many_names"
	CodeTooManyOps   Code = "too_many_ops"
	CodeBadCursor    Code = "bad_cursor"

	// Refused by the state machine; nothing changed. Overflow and
	// out-of-bounds carry the counter's current value.
	CodeOverflow      Code = "overflow"
	CodeOutOfBounds   Code = "out_of_bounds"
	CodeKeyReused     Code = "key_reused"     // the idempotency key was used for another op
	CodeCounterSplit  Code = "counter_split"  // bounds and TTL need an unsplit counter
	CodeNotSplittable Code = "not_splittable" // a counter with an expiry cannot be split
	CodeSplitShrink   Code = "split_shrink"   // the factor is higher already; it carries it

	// Not applied: safe to retry, with or without an idempotency key.
	CodeNoLeader    Code = "no_leader"
	CodeUnavailable Code = "unavailable"
	// The shard leader's idempotency key tables are at their cap
	// (--dedup-max-keys) and the op's key is new: retry once keys expire,
	// or send it without a key.
	CodeKeysFull Code = "keys_full"

	// A write that may or may not have committed: retry it only with the
	// same idempotency key.
	CodeOutcomeUnknown Code = "outcome_unknown"

	// Membership: the node named is not a member, or the change asked
	// for would cost a shard its replicas or its quorum; nothing changed.
	CodeUnknownNode       Code = "unknown_node"
	CodeMembershipRefused Code = "membership_refused"

	// Changefeed: the cursor is older than a shard's history (resync from
	// a dump), or the shard keeps no changes.
	CodeCursorExpired Code = "cursor_expired"
	CodeChangesOff    Code = "changes_off"

	CodeInternal Code = "internal"
)

// BadInput reports whether c is one of the bad-input codes.
func (c Code) BadInput() bool {
	switch c {
	case CodeBadName, CodeBadActor, CodeBadKey, CodeBadDelta, CodeBadBounds, CodeBadTTL, CodeBadSplit,
		CodeTooManyNames, CodeTooManyOps, CodeBadCursor:
		return true
	}
	return false
}

// Error is how every operation of the core fails. Message is written for
// a client to read; Value is the counter's value (or split factor) when
// HasValue says the code carries one.
type Error struct {
	Code     Code
	Message  string
	Value    int64
	HasValue bool
	cause    error // the shard or forwarding error behind it, if any
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Message }
func (e *Error) Unwrap() error { return e.cause }

func badInput(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

func withValue(code Code, msg string, v int64) *Error {
	return &Error{Code: code, Message: msg, Value: v, HasValue: true}
}

// errNotFormed: before the cluster forms this node does not know the shard
// count, so it cannot place a counter on its shard.
var errNotFormed = &Error{Code: CodeUnavailable, Message: "this node has not joined a formed cluster yet; nothing was applied"}

// errSplitting: a keyed write kept being refused because its counter is in
// the middle of a split; nothing was applied.
var errSplitting = errors.New("the counter is being split")

// errNoLeader: no leader could be found for the shard before the deadline.
var errNoLeader = errors.New("no leader for the shard")

// clusterError says what a client may conclude from a failed shard
// operation.
func clusterError(err error) *Error {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e
	case errors.Is(err, shard.ErrOutcomeUnknown):
		e = &Error{Code: CodeOutcomeUnknown, Message: "the op may or may not have been applied; retry it with the same idempotency_key"}
	case errors.Is(err, shard.ErrKeysFull):
		e = &Error{Code: CodeKeysFull, Message: "the idempotency key table is full (--dedup-max-keys); nothing was applied: retry later, when older keys have expired"}
	case errors.Is(err, errSplitting):
		e = &Error{Code: CodeUnavailable, Message: "the counter is being split right now; nothing was applied, retry shortly"}
	case errors.Is(err, errNoLeader):
		e = &Error{Code: CodeNoLeader, Message: "the counter's shard has no leader right now; nothing was applied"}
	case errors.Is(err, shard.ErrUnavailable), errors.Is(err, shard.ErrClosed):
		e = &Error{Code: CodeUnavailable, Message: "the counter's shard is unavailable; nothing was applied"}
	default:
		e = &Error{Code: CodeInternal, Message: err.Error()}
	}
	e.cause = err
	return e
}

// refusal is the error of an op the state machine refused (res.Code is
// not fsm.OK).
func refusal(res fsm.Result) *Error {
	switch res.Code {
	case fsm.ErrOverflow:
		return withValue(CodeOverflow, "the result would overflow int64; nothing changed", res.Value)
	case fsm.ErrOutOfBounds:
		return withValue(CodeOutOfBounds, "the result would leave the counter outside its min/max; nothing changed", res.Value)
	case fsm.ErrKeyReused:
		return &Error{Code: CodeKeyReused, Message: "this idempotency key was already used for a different operation"}
	case fsm.ErrSplit:
		return &Error{Code: CodeCounterSplit, Message: "the counter is split across shards: bounds (min/max) and ttl_ms need an unsplit counter; nothing changed"}
	}
	return &Error{Code: CodeInternal, Message: "unexpected result code " + res.Code.String()}
}

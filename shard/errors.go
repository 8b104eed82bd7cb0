package shard

import (
	"errors"
	"fmt"
)

// The errors a shard operation can end with. Callers must tell apart the
// ones that say "this did not happen" (safe to retry anywhere) from
// ErrOutcomeUnknown, which says "this may or may not have happened".
var (
	// ErrOutcomeUnknown: the entry may have been appended to the log and may
	// still commit (leadership lost, timeout, shutdown after proposing).
	// Only a retry with the same idempotency key is safe.
	ErrOutcomeUnknown = errors.New("outcome unknown: the write may or may not have committed")
	// ErrUnavailable: the operation was not carried out (not proposed, or a
	// read that could not be confirmed); retrying is safe.
	ErrUnavailable = errors.New("shard unavailable")
	// ErrClosed: the shard is shutting down and took nothing.
	ErrClosed = errors.New("shard closed")
	// ErrInvalidOp: an op is malformed (empty or oversized name or key,
	// unknown kind); nothing was proposed.
	ErrInvalidOp = errors.New("invalid op")
	// ErrKeysFull: the node's idempotency key tables are at their cap and
	// an op carries a key they do not hold; nothing was proposed. Keys
	// expire with the dedup TTL, so a retry later may be admitted.
	ErrKeysFull = errors.New("idempotency key table full")
)

// NotLeaderError says this replica is not the shard's leader; nothing was
// done. Leader names the leader this replica knows of, if any.
type NotLeaderError struct {
	Shard      uint32
	LeaderID   string
	LeaderAddr string
}

func (e *NotLeaderError) Error() string {
	if e.LeaderID == "" {
		return fmt.Sprintf("shard %d: not the leader, no leader known", e.Shard)
	}
	return fmt.Sprintf("shard %d: not the leader (leader is %s at %s)", e.Shard, e.LeaderID, e.LeaderAddr)
}

// IsNotLeader reports whether err is a *NotLeaderError.
func IsNotLeader(err error) (*NotLeaderError, bool) {
	var nl *NotLeaderError
	ok := errors.As(err, &nl)
	return nl, ok
}

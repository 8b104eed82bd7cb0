package shard

import "strconv"

// Digest returns this replica's applied index and the digest of its counter
// state (fsm.Machine.Digest), read under one lock so both describe the same
// state. Compare replicas only at equal indexes, once writes have stopped:
// the index is published just after a batch is applied, so while entries
// are being applied the state may already be a batch ahead of it.
func (s *Shard) Digest() (applied uint64, digest string, counters int) {
	s.sm.mu.RLock()
	defer s.sm.mu.RUnlock()
	return s.sm.applied.Load(), s.sm.m.Digest(), s.sm.m.Counters()
}

// smallSnapshotThreshold: below it, snapshots are checked every second and
// the log tail kept after one is half the threshold (see Open).
const smallSnapshotThreshold = 1024

// LastSnapshotIndex is the index of this replica's latest snapshot (0: none).
// Log entries older than it minus the trailing logs are gone, so a replica
// behind that point can only catch up by installing a snapshot.
func (s *Shard) LastSnapshotIndex() uint64 {
	idx, _ := strconv.ParseUint(s.r.Stats()["last_snapshot_index"], 10, 64)
	return idx
}

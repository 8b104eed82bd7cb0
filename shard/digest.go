package shard

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

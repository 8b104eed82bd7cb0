package shard

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// Changes to the shard's replica set, made by its leader one at a time,
// each a raft configuration entry committed like any other: the
// replicated record of where the shard lives.

// Server is one replica of the shard's raft configuration.
type Server struct {
	ID, Addr string
	Voter    bool // false: a non-voter catching up, not counted in quorums
}

// Configuration is the shard's latest raft configuration as this replica
// knows it, the log index it was written at, and the replica's commit
// index: when Commit >= Index, the configuration is committed.
type Configuration struct {
	Index, Commit uint64
	Servers       []Server
}

// changeTimeout bounds one configuration change: raft rejects a change
// while another is uncommitted, and a leader without a quorum cannot
// commit one.
const changeTimeout = 10 * time.Second

// Configuration returns the latest configuration.
func (s *Shard) Configuration() (Configuration, error) {
	f := s.r.GetConfiguration()
	if err := f.Error(); err != nil {
		return Configuration{}, err
	}
	c := Configuration{Index: f.Index(), Commit: s.r.CommitIndex()}
	for _, srv := range f.Configuration().Servers {
		c.Servers = append(c.Servers, Server{ID: string(srv.ID), Addr: string(srv.Address), Voter: srv.Suffrage == raft.Voter})
	}
	return c, nil
}

// AddLearner adds node id (at addr) as a non-voter: it receives the log
// (a snapshot first, when it is far behind) but counts toward no quorum.
// prev is the configuration index the caller decided from; the change is
// refused if the configuration moved since (0: no check).
func (s *Shard) AddLearner(id, addr string, prev uint64) error {
	return s.change(s.r.AddNonvoter(raft.ServerID(id), raft.ServerAddress(addr), prev, changeTimeout))
}

// Promote makes the non-voter id a voter.
func (s *Shard) Promote(id, addr string, prev uint64) error {
	return s.change(s.r.AddVoter(raft.ServerID(id), raft.ServerAddress(addr), prev, changeTimeout))
}

// RemoveServer drops id from the configuration. The leader must not remove
// itself this way (hand the leadership off first).
func (s *Shard) RemoveServer(id string, prev uint64) error {
	if id == s.cfg.NodeID {
		return fmt.Errorf("shard %d: the leader does not remove itself; transfer the leadership first", s.id)
	}
	return s.change(s.r.RemoveServer(raft.ServerID(id), prev, changeTimeout))
}

func (s *Shard) change(f raft.IndexFuture) error {
	err := f.Error()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
		return s.notLeader()
	}
	return fmt.Errorf("shard %d: configuration change: %w", s.id, err)
}

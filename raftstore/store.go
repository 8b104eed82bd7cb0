// Package raftstore keeps the raft logs and stable state (term and vote) of
// every shard replica of a node in one store, and makes the appends of
// different shards durable together.
//
// Each shard's raft group appends to its log and waits for the fsync before
// it counts itself toward a quorum. With one store per shard, a node that
// takes part in several busy groups (a split hot counter, or writes spread
// over many counters) pays a sync per group per append. Here the appends
// that arrive while a sync is running share the next one (group commit at
// the storage layer, as the proposer does for raft entries), so the fsync
// count grows with the node's commit rate, not with the number of active
// groups.
//
// Two kinds of store sit behind the one API: "pebble" (the default), a
// pebble database whose commit pipeline merges concurrent synced batches
// into one WAL fdatasync, and "bolt", the raft-boltdb file of earlier
// versions, whose commit loop merges appends into one bolt commit (two
// fdatasyncs and page writes).
package raftstore

import (
	"errors"

	"github.com/hashicorp/raft"
)

// ErrClosed: the store was closed.
var ErrClosed = errors.New("raftstore: closed")

// The kinds of store OpenDir opens.
const (
	KindPebble = "pebble"
	KindBolt   = "bolt"
	// KindDefault is the kind a node uses unless told otherwise.
	KindDefault = KindPebble
)

// Store is a node's shared store. Open one per data dir, get each shard's
// view with Shard, close the shards' rafts, then Close the Store.
type Store struct {
	kind string
	b    backend
}

// backend is one kind of store.
type backend interface {
	shard(id uint32) (logView, error)
	stats() Stats
	close() error
}

type logView interface {
	raft.LogStore
	raft.StableStore
}

// Log is one shard's view: a raft.LogStore and raft.StableStore. An
// append (StoreLogs) returns nil only once a sync covering it is done.
type Log struct{ logView }

// Stats counts the store's work since it opened.
type Stats struct {
	// Commits: groups of appends made durable together (bolt: commits of
	// the commit loop; pebble: WAL syncs).
	Commits uint64
	// Appends: shard appends (StoreLogs calls that succeeded or failed in
	// a commit), and Entries: the log entries in them.
	Appends, Entries uint64
	// Syncs: the fsyncs and fdatasyncs the store issued for everything,
	// appends, term and vote, truncation and (pebble) its own flushes and
	// compactions. pebble counts the calls it makes; bolt has no hook, so
	// its figure is two per write transaction, which is what bolt does.
	Syncs uint64
}

// Kind says which kind of store this is.
func (s *Store) Kind() string { return s.kind }

// Shard returns shard id's view.
func (s *Store) Shard(id uint32) (*Log, error) {
	v, err := s.b.shard(id)
	if err != nil {
		return nil, err
	}
	return &Log{v}, nil
}

// Stats returns the counts so far.
func (s *Store) Stats() Stats { return s.b.stats() }

// Close closes the store. Every shard using it must be shut down first.
func (s *Store) Close() error { return s.b.close() }

// Open opens (or creates) a bolt store file at path, without the checks
// and migration of OpenDir.
func Open(path string) (*Store, error) {
	b, err := openBolt(path)
	if err != nil {
		return nil, err
	}
	return &Store{kind: KindBolt, b: b}, nil
}

package raftstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// The store's names inside a node's data dir.
const (
	BoltFile  = "raft.db" // the bolt store, and the layout of earlier versions
	PebbleDir = "raftlog" // the pebble store
)

// OpenDir opens the store of kind (KindPebble, KindBolt, or "" for
// KindDefault) in the node's data dir.
//
// The pebble store migrates a bolt store it finds (raft.db, renamed to
// raft.db.migrated once copied). The bolt store refuses to open where the
// pebble store holds data: starting from raft.db would silently drop what
// the node has logged since.
func OpenDir(dataDir, kind string) (*Store, error) {
	if kind == "" {
		kind = KindDefault
	}
	boltPath := filepath.Join(dataDir, BoltFile)
	pebblePath := filepath.Join(dataDir, PebbleDir)
	switch kind {
	case KindBolt:
		has, err := pebbleHasData(pebblePath)
		if err != nil {
			return nil, err
		}
		if has {
			return nil, fmt.Errorf("raftstore: %s holds the node's pebble log store: the bolt log store (%s) would start without it; "+
				"start with --log-store %s", pebblePath, boltPath, KindPebble)
		}
		return Open(boltPath)
	case KindPebble:
		s, err := openPebble(pebblePath, vfs.Default, newPebbleLogger())
		if err != nil {
			return nil, err
		}
		if err := migrateFromBolt(s, boltPath); err != nil {
			return nil, errors.Join(err, s.close())
		}
		return &Store{kind: KindPebble, b: s}, nil
	default:
		return nil, fmt.Errorf("raftstore: unknown log store kind %q (want %q or %q)", kind, KindPebble, KindBolt)
	}
}

// pebbleHasData says whether dir holds a pebble store with log entries or
// stable keys.
func pebbleHasData(dir string) (bool, error) {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return false, nil
	} else if err != nil {
		return false, err
	}
	s, err := openPebble(dir, vfs.Default, newPebbleLogger())
	if err != nil {
		return false, err
	}
	has, err := hasData(s.db)
	return has, errors.Join(err, s.close())
}

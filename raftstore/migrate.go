package raftstore

// Migration of a data dir from the bolt store (raft.db) to the pebble
// store. It runs when a node opens its pebble store and finds raft.db:
// every shard's log run and stable keys are copied, the copy is synced and
// marked done, and only then is raft.db renamed to raft.db.migrated. A
// crash before the mark leaves raft.db in place and a copy marked as
// started, which the next start discards and redoes; a crash after it
// leaves only the rename to do.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"go.etcd.io/bbolt"
)

var (
	migrationKey     = []byte{markerPrefix, 'b', 'o', 'l', 't', '-', 'm', 'i', 'g', 'r', 'a', 't', 'i', 'o', 'n'}
	migrationStarted = []byte("started")
	migrationDone    = []byte("done")
)

// migrateBatchBytes bounds the batches of a migration's copy.
const migrateBatchBytes = 4 << 20

// migrateFromBolt moves the bolt store at boltPath, if there is one, into
// s. It refuses when s already holds data of its own: then two stores
// claim the node's raft state, and picking one is the operator's call.
func migrateFromBolt(s *pebbleStore, boltPath string) error {
	if _, err := os.Stat(boltPath); errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return err
	}
	mark, _, err := get(s.db, migrationKey)
	if err != nil {
		return err
	}
	switch {
	case bytes.Equal(mark, migrationDone):
		return retireBolt(boltPath)
	case bytes.Equal(mark, migrationStarted):
		slog.Warn("raftstore: redoing an interrupted migration from bolt", "from", boltPath)
		if err := wipe(s.db); err != nil {
			return err
		}
	default:
		has, err := hasData(s.db)
		if err != nil {
			return err
		}
		if has {
			return fmt.Errorf("raftstore: %s (a bolt log store) and the pebble log store in %s both hold raft state; "+
				"move %s away to keep the pebble store, or move the pebble store away to migrate raft.db into a new one",
				boltPath, filepath.Dir(boltPath), boltPath)
		}
	}
	if err := s.db.Set(migrationKey, migrationStarted, pebble.Sync); err != nil {
		return err
	}
	shards, entries, err := copyBolt(s.db, boltPath)
	if err != nil {
		return fmt.Errorf("raftstore: migrate %s: %w", boltPath, err)
	}
	// The synced mark covers the whole copy: the WAL is one ordered log.
	if err := s.db.Set(migrationKey, migrationDone, pebble.Sync); err != nil {
		return err
	}
	slog.Info("raftstore: migrated the bolt log store", "from", boltPath, "shards", shards, "entries", entries)
	return retireBolt(boltPath)
}

// retireBolt renames the migrated bolt file so that no later start reads
// it again, and syncs the directory so the rename holds.
func retireBolt(boltPath string) error {
	if err := os.Rename(boltPath, boltPath+".migrated"); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(boltPath))
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// wipe deletes every log entry and stable key.
func wipe(db *pebble.DB) error {
	b := db.NewBatch()
	defer b.Close()
	if err := b.DeleteRange([]byte{logPrefix}, []byte{logPrefix + 1}, nil); err != nil {
		return err
	}
	if err := b.DeleteRange([]byte{stablePrefix}, []byte{stablePrefix + 1}, nil); err != nil {
		return err
	}
	return b.Commit(pebble.Sync)
}

// hasData says whether db holds any log entry or stable key.
func hasData(db *pebble.DB) (bool, error) {
	for _, p := range []byte{logPrefix, stablePrefix} {
		it, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{p}, UpperBound: []byte{p + 1}})
		if err != nil {
			return false, err
		}
		found := it.First()
		if err := errors.Join(it.Error(), it.Close()); err != nil {
			return false, err
		}
		if found {
			return true, nil
		}
	}
	return false, nil
}

// boltShard is what the bolt store keeps of one shard.
type boltShard struct {
	first  uint64 // persisted first index, 0 when none
	stable map[string][]byte
}

// copyBolt copies into db what the bolt store at path serves: for each
// shard, its stable keys and the contiguous run of entries from its
// persisted first index (entries below it are crash leftovers the bolt
// store would delete; nothing past a gap is reachable there either).
// raft.db is only read.
func copyBolt(db *pebble.DB, path string) (shards int, entries uint64, err error) {
	bdb, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		return 0, 0, err
	}
	defer bdb.Close()
	// raft-boltdb decodes its own entries; it shares the read-only lock.
	dec, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bbolt.Options{ReadOnly: true, Timeout: 5 * time.Second}})
	if err != nil {
		return 0, 0, err
	}
	defer dec.Close()

	found := map[uint32]*boltShard{}
	at := func(id uint32) *boltShard {
		if found[id] == nil {
			found[id] = &boltShard{stable: map[string][]byte{}}
		}
		return found[id]
	}
	err = bdb.View(func(tx *bbolt.Tx) error {
		if conf := tx.Bucket([]byte("conf")); conf != nil {
			if err := conf.ForEach(func(k, v []byte) error {
				id, rest, ok := parseBoltConfKey(k)
				switch {
				case !ok:
					return fmt.Errorf("unknown key %q in the conf bucket", k)
				case rest == "first-index":
					if len(v) != 8 {
						return fmt.Errorf("key %q holds %d bytes", k, len(v))
					}
					at(id).first = binary.BigEndian.Uint64(v)
				case len(rest) > len("stable/") && rest[:len("stable/")] == "stable/":
					at(id).stable[rest[len("stable/"):]] = append([]byte(nil), v...)
				default:
					return fmt.Errorf("unknown key %q in the conf bucket", k)
				}
				return nil
			}); err != nil {
				return err
			}
		}
		logs := tx.Bucket([]byte("logs"))
		if logs == nil {
			return nil
		}
		b := db.NewBatch()
		defer func() { b.Close() }()
		var buf []byte
		for id, sh := range found {
			if sh.first == 0 {
				continue
			}
			c := logs.Cursor()
			next := sh.first
			for k, _ := c.Seek(binary.BigEndian.AppendUint64(nil, uint64(id)<<48|next)); k != nil && next <= maxIndex &&
				binary.BigEndian.Uint64(k) == uint64(id)<<48|next; k, _ = c.Next() {
				var log raft.Log
				if err := dec.GetLog(uint64(id)<<48|next, &log); err != nil {
					return fmt.Errorf("shard %d index %d: %w", id, next, err)
				}
				log.Index = next
				buf = appendEntry(buf[:0], &log)
				if err := b.Set(logKey(id, next), buf, nil); err != nil {
					return err
				}
				entries++
				next++
				if b.Len() >= migrateBatchBytes {
					if err := b.Commit(pebble.NoSync); err != nil {
						return err
					}
					b.Close()
					b = db.NewBatch()
				}
			}
		}
		for id, sh := range found {
			for k, v := range sh.stable {
				if err := b.Set(stableKey(id, []byte(k)), v, nil); err != nil {
					return err
				}
			}
		}
		return b.Commit(pebble.NoSync)
	})
	return len(found), entries, err
}

// parseBoltConfKey splits a bolt store conf key, "s<id>/<rest>".
func parseBoltConfKey(k []byte) (id uint32, rest string, ok bool) {
	s := string(k)
	if len(s) < 3 || s[0] != 's' {
		return 0, "", false
	}
	slash := bytes.IndexByte(k, '/')
	if slash < 2 {
		return 0, "", false
	}
	n, err := strconv.ParseUint(s[1:slash], 10, 16)
	if err != nil {
		return 0, "", false
	}
	return uint32(n), s[slash+1:], true
}

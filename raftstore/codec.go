package raftstore

import (
	"encoding/binary"
	"errors"
	"time"

	"github.com/hashicorp/raft"
)

// entryVersion is the first byte of every encoded log entry, so the layout
// can change without guessing what old bytes mean.
const entryVersion = 1

var errBadEntry = errors.New("raftstore: malformed log entry")

// appendEntry appends log's value encoding to dst: version, term, type,
// the leader's append time (unix nanoseconds, 0 for none), then data and
// extensions, each length-prefixed. The index is in the key, not here.
// A fixed binary layout, because msgpack's reflection was a visible part of
// every append's CPU.
func appendEntry(dst []byte, log *raft.Log) []byte {
	dst = append(dst, entryVersion)
	dst = binary.AppendUvarint(dst, log.Term)
	dst = append(dst, byte(log.Type))
	var at int64
	if !log.AppendedAt.IsZero() {
		at = log.AppendedAt.UnixNano()
	}
	dst = binary.AppendVarint(dst, at)
	dst = binary.AppendUvarint(dst, uint64(len(log.Data)))
	dst = append(dst, log.Data...)
	dst = binary.AppendUvarint(dst, uint64(len(log.Extensions)))
	dst = append(dst, log.Extensions...)
	return dst
}

// decodeEntry fills log (but its Index) from b, copying data and
// extensions: b belongs to the store.
func decodeEntry(b []byte, log *raft.Log) error {
	if len(b) == 0 || b[0] != entryVersion {
		return errBadEntry
	}
	b = b[1:]
	term, n := binary.Uvarint(b)
	if n <= 0 || len(b) < n+1 {
		return errBadEntry
	}
	typ := raft.LogType(b[n])
	b = b[n+1:]
	at, n := binary.Varint(b)
	if n <= 0 {
		return errBadEntry
	}
	b = b[n:]
	data, b, err := lengthPrefixed(b)
	if err != nil {
		return err
	}
	ext, b, err := lengthPrefixed(b)
	if err != nil || len(b) != 0 {
		return errBadEntry
	}
	log.Term, log.Type = term, typ
	log.Data, log.Extensions = data, ext
	log.AppendedAt = time.Time{}
	if at != 0 {
		log.AppendedAt = time.Unix(0, at)
	}
	return nil
}

// lengthPrefixed reads one uvarint-length-prefixed field as a copy (nil
// when empty, as raft-boltdb gives it back).
func lengthPrefixed(b []byte) (field, rest []byte, err error) {
	l, n := binary.Uvarint(b)
	if n <= 0 || uint64(len(b)-n) < l {
		return nil, nil, errBadEntry
	}
	b = b[n:]
	if l > 0 {
		field = append([]byte(nil), b[:l]...)
	}
	return field, b[l:], nil
}

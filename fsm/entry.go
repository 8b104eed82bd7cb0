// Package fsm is tally's counter state machine: the deterministic core that
// every Raft replica runs over the same log of entries.
//
// It is pure: no networking, no Raft, no wall clock. The only notion of time
// is Entry.Time, stamped by the leader when it proposed the entry, so every
// replica (and every replay of the log) makes the same decisions, including
// when idempotency keys expire.
package fsm

import (
	"encoding/binary"
	"errors"
)

// OpKind says what an Op does. Only OpAdd exists today; the kind is still
// carried on the wire so new kinds can be added without a new format version.
type OpKind uint8

// OpAdd adds Delta to the counter. Increments and decrements are both adds (a
// decrement has a negative Delta) so they share one overflow and dedup path.
const OpAdd OpKind = 1

// Limits on the strings in an Op. They bound the size of an encoded op and of
// the per-key memory held by the dedup table.
const (
	MaxNameLen = 256
	MaxKeyLen  = 256
)

// Op is one operation on one counter.
type Op struct {
	Kind  OpKind
	Name  string // counter name, 1..MaxNameLen bytes
	Delta int64
	Key   string // idempotency key, "" = none; 0..MaxKeyLen bytes
}

// Entry is one Raft log entry: a batch of ops proposed together (group commit).
type Entry struct {
	Time int64 // leader's wall clock when proposed, Unix nanoseconds; the FSM's only clock
	Ops  []Op  // may be empty (an empty entry is a valid "term marker" used as a barrier)
}

// Errors returned by Op.Validate and DecodeEntry.
var (
	errTruncated    = errors.New("fsm: entry truncated")
	errVarint       = errors.New("fsm: entry has a malformed or non-minimal varint")
	errEntryVersion = errors.New("fsm: unknown entry format version")
	errEntryType    = errors.New("fsm: unknown entry type")
	errOpCount      = errors.New("fsm: entry op count exceeds its length")
	errUnknownKind  = errors.New("fsm: unknown op kind")
	errEmptyName    = errors.New("fsm: empty counter name")
	errNameTooLong  = errors.New("fsm: counter name longer than MaxNameLen")
	errKeyTooLong   = errors.New("fsm: idempotency key longer than MaxKeyLen")
	errTrailing     = errors.New("fsm: trailing bytes after entry")
)

// Validate reports whether op is well formed: a known kind, a name of
// 1..MaxNameLen bytes and a key of at most MaxKeyLen bytes. DecodeEntry
// rejects entries holding invalid ops and Machine.Apply refuses them, so a
// proposer can call this first to fail fast instead of proposing garbage.
func (op Op) Validate() error {
	switch {
	case op.Kind != OpAdd:
		return errUnknownKind
	case len(op.Name) == 0:
		return errEmptyName
	case len(op.Name) > MaxNameLen:
		return errNameTooLong
	case len(op.Key) > MaxKeyLen:
		return errKeyTooLong
	}
	return nil
}

// Entry encoding, version 1, type 1 (op batch):
//
//	version  byte    = 1
//	type     byte    = 1
//	time     varint  (zigzag)
//	count    uvarint
//	count × op:
//	  kind   byte
//	  name   uvarint length, then bytes
//	  delta  varint  (zigzag)
//	  key    uvarint length, then bytes
//
// Varints must be minimal, which makes the encoding canonical: an accepted
// input re-encodes to exactly the same bytes.
const (
	entryVersion = 1
	entryTypeOps = 1

	// minOpLen is the fewest bytes one valid op can take (kind, name length,
	// one name byte, delta, key length). It bounds the op count by the input
	// length so a tiny input cannot make DecodeEntry allocate a huge slice.
	minOpLen = 5
)

// AppendEntry appends the encoding of e to dst and returns the extended slice.
// It does not validate e: an invalid op encodes fine and is rejected by
// DecodeEntry (use Op.Validate before proposing).
func AppendEntry(dst []byte, e *Entry) []byte {
	dst = append(dst, entryVersion, entryTypeOps)
	dst = binary.AppendVarint(dst, e.Time)
	dst = binary.AppendUvarint(dst, uint64(len(e.Ops)))
	for i := range e.Ops {
		op := &e.Ops[i]
		dst = append(dst, byte(op.Kind))
		dst = binary.AppendUvarint(dst, uint64(len(op.Name)))
		dst = append(dst, op.Name...)
		dst = binary.AppendVarint(dst, op.Delta)
		dst = binary.AppendUvarint(dst, uint64(len(op.Key)))
		dst = append(dst, op.Key...)
	}
	return dst
}

// DecodeEntry decodes an entry written by AppendEntry. It never panics; it
// rejects unknown versions and types, truncated or trailing data, invalid ops
// and op counts the input is too short to hold. Each name and key gets its own
// small allocation (rather than pointing into b or into one shared block) so
// that the Machine can keep them without pinning larger buffers.
func DecodeEntry(b []byte) (Entry, error) {
	if len(b) < 2 {
		return Entry{}, errTruncated
	}
	if b[0] != entryVersion {
		return Entry{}, errEntryVersion
	}
	if b[1] != entryTypeOps {
		return Entry{}, errEntryType
	}
	d := decoder{b: b[2:]}
	var e Entry
	e.Time = d.varint()
	n := d.uvarint()
	if d.err != nil {
		return Entry{}, d.err
	}
	if n > uint64(len(d.b)/minOpLen) {
		return Entry{}, errOpCount
	}
	if n > 0 {
		e.Ops = make([]Op, n)
	}
	for i := range e.Ops {
		op := &e.Ops[i]
		if op.Kind = OpKind(d.byte()); d.err == nil && op.Kind != OpAdd {
			return Entry{}, errUnknownKind
		}
		op.Name = d.str(MaxNameLen, errNameTooLong)
		op.Delta = d.varint()
		op.Key = d.str(MaxKeyLen, errKeyTooLong)
		if d.err != nil {
			return Entry{}, d.err
		}
		if op.Name == "" {
			return Entry{}, errEmptyName
		}
	}
	if len(d.b) != 0 {
		return Entry{}, errTrailing
	}
	return e, nil
}

// decoder consumes b from the front. Its error is sticky: after the first
// failure every read returns a zero value, so callers check err once per op.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errTruncated
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.err = errTruncated
	case n < 0:
		d.err = errVarint // more than 64 bits
	case n > 1 && d.b[n-1] == 0:
		d.err = errVarint // padded with a redundant zero group: not canonical
	default:
		d.b = d.b[n:]
		return v
	}
	return 0
}

// varint reads a zigzag varint through uvarint so it gets the same checks.
func (d *decoder) varint() int64 {
	u := d.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

// str reads a length-prefixed string of at most limit bytes, checking the
// length before slicing so a bogus length can neither panic nor allocate.
func (d *decoder) str(limit int, tooLong error) string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > uint64(limit) {
		d.err = tooLong
		return ""
	}
	if n > uint64(len(d.b)) {
		d.err = errTruncated
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// Package fsm is tally's counter state machine: the deterministic core that
// every Raft replica runs over the same log of entries.
//
// It is pure: no networking, no Raft, no wall clock. The only notion of time
// is Entry.Time, stamped by the leader when it proposed the entry, so every
// replica (and every replay of the log) makes the same decisions, including
// when idempotency keys and counters expire.
package fsm

import (
	"encoding/binary"
	"errors"
	"strings"

	"tally/placement"
)

// OpKind says what an Op does. The kind is carried on the wire, so new kinds
// can be added; kinds other than OpAdd need entry format version 2.
type OpKind uint8

const (
	// OpAdd adds Delta to the counter. Increments and decrements are both
	// adds (a decrement has a negative Delta) so they share one overflow,
	// bounds and dedup path. It may carry bounds (HasMin/Min, HasMax/Max)
	// and a TTL.
	OpAdd OpKind = 1

	// OpActorAdd adds Actor to the counter's actor set and, if it was not
	// a member yet, increments the counter by one (a "like"). Adding a
	// member again changes nothing and is not an error.
	OpActorAdd OpKind = 2

	// OpActorRemove removes Actor from the counter's actor set and, if it
	// was a member, decrements the counter by one (an "unlike").
	OpActorRemove OpKind = 3

	// OpSplitBegin begins raising the split factor of the counter Name
	// (see split.go) to a factor (2..MaxSplit), with keys hashed over a
	// shard count (factor..MaxSplit). Build it with SplitBegin.
	OpSplitBegin OpKind = 4

	// OpSplitEnd makes a factor (2..MaxSplit) the split factor of the
	// counter Name, once the keys the begin moved have been imported.
	// Build it with SplitEnd.
	OpSplitEnd OpKind = 5

	// OpImportKey remembers the idempotency Key as applied to the
	// sub-counter Name (a placement.SubName with an index >= 1) by an add
	// of Delta, with the value its first Result had. Build it with
	// ImportKey.
	OpImportKey OpKind = 6

	// OpDelete removes the stored counter Name (a counter or a
	// placement.SubName of one): its value, actor set and expiry. It
	// uses no other field. The split state of a split counter is kept (a
	// split factor only grows), so increments racing the delete on other
	// sub-counters still land on a counter that is summed. Result.Changed
	// says whether something was there.
	OpDelete OpKind = 7

	// OpSet makes Delta the value of the unsplit counter Name (not a
	// sub-counter): its actor set is cleared, and it expires TTL (0 or
	// 1..MaxTTL ms) after the entry's time, or never when TTL is 0. A
	// split counter is refused with ErrSplit. Setting 0 without a TTL
	// deletes the counter.
	OpSet OpKind = 8

	// OpExpire makes the held counter Name (not a sub-counter) expire TTL
	// (1..MaxTTL ms) after the entry's time. On an absent or expired
	// counter nothing happens and Result.Changed is false; a split counter
	// is refused with ErrSplit.
	OpExpire OpKind = 9
)

// Limits on the fields of an Op. The string limits bound the size of an
// encoded op and the per-key and per-actor memory the Machine holds.
const (
	MaxNameLen  = 256
	MaxKeyLen   = 256
	MaxActorLen = 128

	// MaxTTL is the largest Op.TTL, in milliseconds: ten years of 365 days.
	MaxTTL int64 = 10 * 365 * 24 * 60 * 60 * 1000
)

// Op is one operation on one counter.
//
// Fields a kind does not use must be zero (Validate enforces it): Actor is
// only for the actor kinds; Delta, the bounds and TTL only for OpAdd (and
// Delta and TTL for OpSet, TTL for OpExpire); Min and Max must be 0 unless
// HasMin and HasMax say they are in use; OpDelete, OpSet and OpExpire take
// no idempotency Key. The split
// kinds store their own values in Delta, Min and Max: build and read them
// with the constructors and accessors of splitops.go.
type Op struct {
	Kind  OpKind
	Name  string // counter name, 1..MaxNameLen bytes, or a placement.SubName of one
	Delta int64  // OpAdd only
	Key   string // idempotency key, "" = none; 0..MaxKeyLen bytes

	Actor string // OpActorAdd and OpActorRemove: 1..MaxActorLen bytes

	// OpAdd only: the add applies only if the resulting value v satisfies
	// (!HasMin || v >= Min) && (!HasMax || v <= Max); otherwise nothing
	// changes and the Result has Code ErrOutOfBounds.
	Min, Max       int64
	HasMin, HasMax bool

	// OpAdd only: 0 or 1..MaxTTL milliseconds. When the add creates the
	// counter (or finds it expired), the counter expires TTL after the
	// entry's time. An existing counter keeps the expiry it has (or has
	// none): with Max, that makes a fixed-window rate limiter.
	TTL int64
}

// Entry is one Raft log entry: a batch of ops proposed together (group commit).
type Entry struct {
	Time int64 // leader's wall clock when proposed, Unix nanoseconds; the FSM's only clock
	Ops  []Op  // may be empty (an empty entry is a valid "term marker" used as a barrier)
}

// Errors returned by Op.Validate and DecodeEntry.
var (
	errTruncated     = errors.New("fsm: entry truncated")
	errVarint        = errors.New("fsm: entry has a malformed or non-minimal varint")
	errEntryVersion  = errors.New("fsm: unknown entry format version")
	errEntryType     = errors.New("fsm: unknown entry type")
	errOpCount       = errors.New("fsm: entry op count exceeds its length")
	errUnknownKind   = errors.New("fsm: unknown op kind")
	errEmptyName     = errors.New("fsm: empty counter name")
	errNameTooLong   = errors.New("fsm: counter name longer than MaxNameLen")
	errKeyTooLong    = errors.New("fsm: idempotency key longer than MaxKeyLen")
	errTrailing      = errors.New("fsm: trailing bytes after entry")
	errEmptyActor    = errors.New("fsm: actor op without an actor")
	errActorTooLong  = errors.New("fsm: actor longer than MaxActorLen")
	errActorOnAdd    = errors.New("fsm: actor set on an add")
	errAddFieldOnAct = errors.New("fsm: delta, bounds or TTL set on an actor op")
	errBoundUnset    = errors.New("fsm: Min or Max set without HasMin or HasMax")
	errBounds        = errors.New("fsm: Min greater than Max")
	errTTL           = errors.New("fsm: TTL negative or over MaxTTL")
	errOpFlags       = errors.New("fsm: op flags name an empty field (not canonical)")
	errSplitOp       = errors.New("fsm: split op with a bad factor, shard count, name or fields")
	errKeyOp         = errors.New("fsm: delete, set or expire op with a bad name, TTL or a field its kind does not use")
)

// Validate reports whether op is well formed: a known kind, a name of
// 1..MaxNameLen bytes, a key of at most MaxKeyLen bytes, and the fields its
// kind uses (and only those): for OpAdd, consistent bounds and a TTL of
// 0..MaxTTL; for the actor kinds, an actor of 1..MaxActorLen bytes and
// nothing else. DecodeEntry rejects entries holding invalid ops and
// Machine.Apply refuses them, so a proposer can call this first to fail fast
// instead of proposing garbage.
func (op Op) Validate() error {
	switch {
	case op.Kind < OpAdd || op.Kind > OpExpire:
		return errUnknownKind
	case len(op.Name) == 0:
		return errEmptyName
	case len(op.Name) > MaxNameLen && !isSubName(op.Name):
		return errNameTooLong
	case len(op.Key) > MaxKeyLen:
		return errKeyTooLong
	}
	switch op.Kind {
	case OpSplitBegin, OpSplitEnd, OpImportKey:
		return op.validateSplit()
	case OpDelete, OpSet, OpExpire:
		return op.validateKeyOp()
	}
	if op.Kind == OpAdd {
		switch {
		case op.Actor != "":
			return errActorOnAdd
		case (!op.HasMin && op.Min != 0) || (!op.HasMax && op.Max != 0):
			return errBoundUnset
		case op.HasMin && op.HasMax && op.Min > op.Max:
			return errBounds
		case op.TTL < 0 || op.TTL > MaxTTL:
			return errTTL
		}
		return nil
	}
	switch {
	case len(op.Actor) == 0:
		return errEmptyActor
	case len(op.Actor) > MaxActorLen:
		return errActorTooLong
	case op.Delta != 0 || op.HasMin || op.HasMax || op.Min != 0 || op.Max != 0 || op.TTL != 0:
		return errAddFieldOnAct
	}
	return nil
}

// validateSplit checks the fields of the split kinds.
func (op Op) validateSplit() error {
	base, sub := placement.ParseSubName(op.Name)
	// A split's own ops name the counter itself: a plain name, as the
	// snapshot's split table must hold it (no '/', which only sub-counter
	// names have).
	plain := strings.IndexByte(op.Name, '/') < 0
	ok := op.TTL == 0
	if op.Kind != OpImportKey {
		ok = ok && op.Actor == ""
	}
	switch op.Kind {
	case OpSplitBegin:
		ok = ok && plain && sub == 0 && len(base) <= MaxNameLen && op.Key == "" &&
			op.Delta >= 2 && op.Delta <= MaxSplit && op.HasMax && op.Max >= op.Delta && op.Max <= MaxSplit &&
			!op.HasMin && op.Min == 0
	case OpSplitEnd:
		ok = ok && plain && sub == 0 && len(base) <= MaxNameLen && op.Key == "" &&
			op.Delta >= 2 && op.Delta <= MaxSplit && !op.HasMin && op.Min == 0 && !op.HasMax && op.Max == 0
	case OpImportKey:
		// The key itself, or its hash (see ImportKeyHash): one of them.
		key := (op.Key != "" && op.Actor == "") || (op.Key == "" && len(op.Actor) == hashedKeyLen)
		ok = ok && sub > 0 && len(base) <= MaxNameLen && key && op.HasMin && !op.HasMax && op.Max == 0
	}
	if !ok {
		return errSplitOp
	}
	return nil
}

// validateKeyOp checks the fields of OpDelete, OpSet and OpExpire: none
// has a key, an actor or bounds; only OpDelete may name a sub-counter.
func (op Op) validateKeyOp() error {
	_, sub := placement.ParseSubName(op.Name)
	ok := op.Key == "" && op.Actor == "" && !op.HasMin && !op.HasMax && op.Min == 0 && op.Max == 0
	switch op.Kind {
	case OpDelete:
		ok = ok && op.Delta == 0 && op.TTL == 0
	case OpSet:
		ok = ok && sub == 0 && op.TTL >= 0 && op.TTL <= MaxTTL
	case OpExpire:
		ok = ok && sub == 0 && op.Delta == 0 && op.TTL >= 1 && op.TTL <= MaxTTL
	}
	if !ok {
		return errKeyOp
	}
	return nil
}

// Entry encoding. Every entry starts with a version byte and a type byte
// (type 1: op batch). Varints are zigzag for signed values, as in
// encoding/binary, and must be minimal.
//
// Version 1 (only OpAdd, without bounds or TTL):
//
//	version  byte    = 1
//	type     byte    = 1
//	time     varint
//	count    uvarint
//	count × op:
//	  kind   byte    (must be OpAdd)
//	  name   uvarint length, then bytes
//	  delta  varint
//	  key    uvarint length, then bytes
//
// Version 2 (every field and every kind; OpDelete, OpSet and OpExpire use
// the same layout, with only the fields their kind takes):
//
//	version  byte    = 2
//	type     byte    = 1
//	time     varint
//	count    uvarint
//	count × op:
//	  kind   byte
//	  name   uvarint length, then bytes
//	  flags  byte: which optional fields follow, in this order:
//	    0x01  delta   varint, non-zero
//	    0x02  key     uvarint length (1..MaxKeyLen), then bytes
//	    0x04  actor   uvarint length (1..MaxActorLen), then bytes
//	    0x08  HasMin  (no payload)
//	    0x10  min     varint, non-zero (absent: Min = 0)
//	    0x20  HasMax  (no payload)
//	    0x40  max     varint, non-zero (absent: Max = 0)
//	    0x80  ttl     varint, non-zero
//
// An absent field is zero. Every Op field is carried, so an op (valid or
// not) decodes to exactly the op that was encoded, or is rejected.
//
// Both versions are canonical: an accepted input re-encodes, in its own
// version, to exactly the same bytes (a version 2 flag bit naming a zero
// field is rejected). AppendEntry writes version 1 whenever every op fits in
// it (no actor kind, actor, bounds or TTL), so that nodes that only know
// version 1 keep decoding everything but entries that use the new features;
// otherwise it writes version 2.
const (
	entryV1      = 1
	entryV2      = 2
	entryTypeOps = 1

	// minOpLen is the fewest bytes one valid op can take: in version 1
	// kind, name length, one name byte, delta, key length; in version 2
	// kind, name length, one name byte, flags. It bounds the op count by the
	// input length so a tiny input cannot make DecodeEntry allocate a huge
	// slice.
	minOpLenV1 = 5
	minOpLenV2 = 4
)

// Version 2 op flags.
const (
	flagDelta  = 0x01
	flagKey    = 0x02
	flagActor  = 0x04
	flagHasMin = 0x08
	flagMin    = 0x10
	flagHasMax = 0x20
	flagMax    = 0x40
	flagTTL    = 0x80
)

// maxOpLenV2 is the longest version 2 op encoding of a valid op: kind, name,
// flags, four varints and key and actor.
const maxOpLenV2 = 1 + (2 + maxStoredNameLen) + 1 + (2 + MaxKeyLen) + (2 + MaxActorLen) + 4*binary.MaxVarintLen64

// AppendEntry appends the encoding of e to dst and returns the extended slice:
// version 1 if every op fits in it, else version 2. It does not validate e:
// an invalid op encodes fine and is rejected by DecodeEntry (use Op.Validate
// before proposing).
func AppendEntry(dst []byte, e *Entry) []byte {
	version := byte(entryV1)
	for i := range e.Ops {
		if needsV2(&e.Ops[i]) {
			version = entryV2
			break
		}
	}
	return appendEntry(dst, e, version)
}

// needsV2 reports whether op uses anything version 1 cannot carry.
func needsV2(op *Op) bool {
	return op.Kind != OpAdd || op.Actor != "" ||
		op.HasMin || op.HasMax || op.Min != 0 || op.Max != 0 || op.TTL != 0
}

// appendEntry encodes e in the given version. Version 1 drops the fields it
// cannot carry; AppendEntry only asks for it when there are none.
func appendEntry(dst []byte, e *Entry, version byte) []byte {
	dst = append(dst, version, entryTypeOps)
	dst = binary.AppendVarint(dst, e.Time)
	dst = binary.AppendUvarint(dst, uint64(len(e.Ops)))
	for i := range e.Ops {
		op := &e.Ops[i]
		if version == entryV1 {
			dst = append(dst, byte(op.Kind))
			dst = appendString(dst, op.Name)
			dst = binary.AppendVarint(dst, op.Delta)
			dst = appendString(dst, op.Key)
		} else {
			dst = appendOpV2(dst, op)
		}
	}
	return dst
}

// appendOpV2 appends the version 2 encoding of one op. Snapshots use it too,
// for the ops their dedup records remember.
func appendOpV2(dst []byte, op *Op) []byte {
	var flags byte
	set := func(bit byte, on bool) {
		if on {
			flags |= bit
		}
	}
	set(flagDelta, op.Delta != 0)
	set(flagKey, op.Key != "")
	set(flagActor, op.Actor != "")
	set(flagHasMin, op.HasMin)
	set(flagMin, op.Min != 0)
	set(flagHasMax, op.HasMax)
	set(flagMax, op.Max != 0)
	set(flagTTL, op.TTL != 0)

	dst = append(dst, byte(op.Kind))
	dst = appendString(dst, op.Name)
	dst = append(dst, flags)
	if flags&flagDelta != 0 {
		dst = binary.AppendVarint(dst, op.Delta)
	}
	if flags&flagKey != 0 {
		dst = appendString(dst, op.Key)
	}
	if flags&flagActor != 0 {
		dst = appendString(dst, op.Actor)
	}
	if flags&flagMin != 0 {
		dst = binary.AppendVarint(dst, op.Min)
	}
	if flags&flagMax != 0 {
		dst = binary.AppendVarint(dst, op.Max)
	}
	if flags&flagTTL != 0 {
		dst = binary.AppendVarint(dst, op.TTL)
	}
	return dst
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// DecodeEntry decodes an entry written by AppendEntry, in either version. It
// never panics; it rejects unknown versions and types, truncated or trailing
// data, non-canonical encodings, invalid ops and op counts the input is too
// short to hold. Each string gets its own small allocation (rather than
// pointing into b or into one shared block) so that the Machine can keep them
// without pinning larger buffers.
func DecodeEntry(b []byte) (Entry, error) {
	if len(b) < 2 {
		return Entry{}, errTruncated
	}
	version := b[0]
	if version != entryV1 && version != entryV2 {
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
	minOpLen := minOpLenV1
	if version == entryV2 {
		minOpLen = minOpLenV2
	}
	if n > uint64(len(d.b)/minOpLen) {
		return Entry{}, errOpCount
	}
	if n > 0 {
		e.Ops = make([]Op, n)
	}
	for i := range e.Ops {
		op := &e.Ops[i]
		if version == entryV1 {
			d.opV1(op)
		} else {
			d.opV2(op)
		}
		if d.err != nil {
			return Entry{}, d.err
		}
	}
	if len(d.b) != 0 {
		return Entry{}, errTrailing
	}
	return e, nil
}

// opV1 reads a version 1 op: an OpAdd with name, delta and key.
func (d *decoder) opV1(op *Op) {
	if op.Kind = OpKind(d.byte()); d.err == nil && op.Kind != OpAdd {
		d.err = errUnknownKind
		return
	}
	op.Name = d.str(maxStoredNameLen, errNameTooLong)
	op.Delta = d.varint()
	op.Key = d.str(MaxKeyLen, errKeyTooLong)
	switch {
	case d.err != nil:
	case op.Name == "":
		d.err = errEmptyName
	case len(op.Name) > MaxNameLen && !isSubName(op.Name):
		d.err = errNameTooLong
	}
}

// opV2 reads a version 2 op and validates it.
func (d *decoder) opV2(op *Op) {
	op.Kind = OpKind(d.byte())
	op.Name = d.str(maxStoredNameLen, errNameTooLong)
	flags := d.byte()
	if flags&flagDelta != 0 {
		op.Delta = d.varint()
		d.nonZero(op.Delta != 0)
	}
	if flags&flagKey != 0 {
		op.Key = d.str(MaxKeyLen, errKeyTooLong)
		d.nonZero(op.Key != "")
	}
	if flags&flagActor != 0 {
		op.Actor = d.str(MaxActorLen, errActorTooLong)
		d.nonZero(op.Actor != "")
	}
	op.HasMin = flags&flagHasMin != 0
	if flags&flagMin != 0 {
		op.Min = d.varint()
		d.nonZero(op.Min != 0)
	}
	op.HasMax = flags&flagHasMax != 0
	if flags&flagMax != 0 {
		op.Max = d.varint()
		d.nonZero(op.Max != 0)
	}
	if flags&flagTTL != 0 {
		op.TTL = d.varint()
		d.nonZero(op.TTL != 0)
	}
	if d.err == nil {
		d.err = op.Validate()
	}
}

// decoder consumes b from the front. Its error is sticky: after the first
// failure every read returns a zero value, so callers check err once per op.
type decoder struct {
	b   []byte
	err error
}

// nonZero fails the decoding unless a field its flag said was present is
// non-zero: a flag for a zero field would be a second encoding of the op.
func (d *decoder) nonZero(ok bool) {
	if d.err == nil && !ok {
		d.err = errOpFlags
	}
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

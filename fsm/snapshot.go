package fsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"runtime"
	"slices"
	"strings"
	"unsafe"
)

// Snapshot stream, version 1 (no actors, expiries or new op fields):
//
//	magic     8 bytes "TALLYFSM"
//	version   byte = 1
//	lastTime  varint
//	counters  uvarint count, then per counter (in a canonical order; see below):
//	            name uvarint length + bytes, value varint (never 0)
//	dedup     uvarint count, then per record (oldest first: the FIFO order
//	          that drives expiry):
//	            key uvarint length + bytes, kind byte (OpAdd),
//	            name uvarint length + bytes, delta varint,
//	            time varint (entry Time when the key was first seen),
//	            value varint, code byte (the first Result)
//	crc       4 bytes little-endian: CRC-32C of everything above
//
// Version 2:
//
//	magic     8 bytes "TALLYFSM"
//	version   byte = 2
//	lastTime  varint
//	counters  uvarint count, then per counter (canonical order):
//	            name   uvarint length + bytes
//	            flags  byte, non-zero: which of these follow, in order:
//	              0x01 value   varint, non-zero
//	              0x02 expiry  varint, > 0 (Unix nanoseconds)
//	              0x04 actors  uvarint count (>= 1), then each actor as
//	                           uvarint length + bytes, in strictly
//	                           increasing byte order
//	dedup     uvarint count, then per record (oldest first):
//	            op        uvarint length + the op's entry version 2
//	                      encoding (kind, name, flags, fields; the key is
//	                      one of them and is never empty)
//	            time      varint (entry Time when the key was first seen)
//	            value     varint  \
//	            expiresAt varint   | the first Result
//	            code      byte     |
//	            changed   byte    /  (0 or 1)
//	crc       4 bytes little-endian: CRC-32C of everything above
//
// Version 3 is version 2 with the split table between the dedup records
// and the checksum:
//
//	splits    uvarint count, then per split counter (sorted by name):
//	            name     uvarint length + bytes
//	            n        uvarint (1..MaxSplit)
//	            pending  uvarint (0, or n+1..MaxSplit)
//	            slots    uvarint (n..MaxSplit, >= pending)
//
// Version 4 is version 3 with compact dedup records, which hold a hash of
// the key and a print of the op rather than the key and the op (see
// dedup.go), so a version 4 stream cannot be rewritten as an older one. Per
// record:
//
//	key       8 bytes little-endian: FNV-64a of the key
//	key2      4 bytes little-endian: CRC-32C of the key
//	print     8 bytes little-endian: the op's print (opPrint)
//	kind      byte
//	delta     varint
//	time      varint (entry Time when the key was first seen)
//	value     varint  \
//	code      byte     | the first Result
//	flags     byte     | 0x01 Changed, 0x02 expiresAt follows
//	expiresAt varint  /  (> 0)
//
// Varints are zigzag for signed values, as in encoding/binary. The stream
// must end right after the checksum. The expiry heap is not written: Restore
// rebuilds it from the counters' expiries.
//
// WriteTo writes version 4 while any idempotency key is remembered. Without
// one, it writes version 1 when the state fits in it (no counter has actors
// or an expiry), so that nodes that only know version 1 can still install
// snapshots of a cluster not using the new features; otherwise version 2,
// or version 3 when a counter is split.
//
// Counters are written in a canonical order, by a hash of the name and then
// the name (see ctrData.canonical), and actors sorted, so that replicas with
// equal state write identical bytes, which makes comparing replicas (and
// testing) a byte comparison. Version 1-3 writers sorted counters by name;
// readers accept any order.
const (
	snapMagic = "TALLYFSM"
	snapV1    = 1
	snapV2    = 2
	snapV3    = 3
	snapV4    = 4
)

// Version 2 counter flags.
const (
	ctrValue  = 0x01
	ctrExpiry = 0x02
	ctrActors = 0x04
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

var (
	errSnapMagic     = errors.New("fsm: not a tally snapshot (bad magic)")
	errSnapVersion   = errors.New("fsm: unsupported snapshot version")
	errSnapTruncated = errors.New("fsm: snapshot truncated")
	errSnapChecksum  = errors.New("fsm: snapshot checksum mismatch")
	errSnapTrailing  = errors.New("fsm: trailing bytes after snapshot")
	errSnapCorrupt   = errors.New("fsm: corrupt snapshot")
)

// Snapshot is an immutable point-in-time copy of a Machine's state. It shares
// nothing mutable with the Machine, so WriteTo may run on another goroutine
// while Apply goes on (and several WriteTo calls may run at once). It holds
// on to the dedup table's memory that it shares until Release (or, failing
// that, until it is garbage collected).
type Snapshot struct {
	lastTime int64
	counters *ctrView
	dedup    *dedupView
	splits   map[string]splitState
}

// Release lets go of the memory the Snapshot shares with its Machine. The
// Snapshot must not be written after.
func (s *Snapshot) Release() {
	s.counters.release()
	s.dedup.release()
}

// Snapshot captures the state. It runs on the apply goroutine, so it copies
// almost nothing: the counter table's record chunks and name arena and the
// dedup table's chunks are shared by reference, the maps of actor sets and
// splits cloned; the sorting and encoding are left to WriteTo. Shared
// memory is copied on write: Apply copies a record chunk, or an actor set,
// the first time it changes it while a Snapshot holds it, so the cost is
// paid only for what changes while the snapshot is persisted.
func (m *Machine) Snapshot() *Snapshot {
	s := &Snapshot{
		lastTime: m.lastTime,
		counters: m.ctrs.view(),
		dedup:    m.dedup.view(),
		splits:   maps.Clone(m.splits),
	}
	runtime.AddCleanup(s, (*ctrView).release, s.counters)
	runtime.AddCleanup(s, (*dedupView).release, s.dedup)
	m.gen.Add(1) // every existing actor set is now shared
	return s
}

// fitsV1 reports whether version 1 can carry the snapshot: what it leaves
// out is all zero, and so what restoring it yields is the same state.
func (s *Snapshot) fitsV1() bool {
	if len(s.splits) > 0 {
		return false
	}
	for r := uint32(0); r < s.counters.n; r++ {
		if rec := s.counters.rec(r); rec.name != 0 && (rec.expiry != 0 || rec.actors != 0) {
			return false
		}
	}
	return s.dedup.len() == 0
}

// WriteTo writes the snapshot stream to w and returns the bytes written.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	sw := snapWriter{bw: bufio.NewWriterSize(cw, 64<<10)}
	version := byte(snapV2)
	switch {
	case s.dedup.len() > 0:
		version = snapV4
	case len(s.splits) > 0:
		version = snapV3
	case s.fitsV1():
		version = snapV1
	}

	b := sw.buf()
	b = append(b, snapMagic...)
	b = append(b, version)
	b = binary.AppendVarint(b, s.lastTime)
	cv := s.counters
	b = binary.AppendUvarint(b, uint64(cv.live))
	sw.write(b)
	for _, r := range cv.canonical(cv.n, cv.live) {
		rec := cv.rec(r)
		c := ctrOf(rec, cv.actors, r)
		name := cv.name(rec.name)
		b := append(binary.AppendUvarint(sw.buf(), uint64(len(name))), name...)
		if version == snapV1 {
			sw.write(binary.AppendVarint(b, c.value))
			continue
		}
		var flags byte
		if c.value != 0 {
			flags |= ctrValue
		}
		if c.expiry != 0 {
			flags |= ctrExpiry
		}
		if c.actors != nil {
			flags |= ctrActors
		}
		b = append(b, flags)
		if c.value != 0 {
			b = binary.AppendVarint(b, c.value)
		}
		if c.expiry != 0 {
			b = binary.AppendVarint(b, c.expiry)
		}
		if c.actors == nil {
			sw.write(b)
			continue
		}
		b = binary.AppendUvarint(b, uint64(c.actors.len()))
		sw.write(b)
		for _, a := range c.actors.sorted() {
			sw.write(appendString(sw.buf(), a))
		}
	}
	d := s.dedup
	sw.write(binary.AppendUvarint(sw.buf(), uint64(d.len())))
	for seq := d.head; seq != d.tail; seq++ {
		r := d.rec(seq)
		b := binary.LittleEndian.AppendUint64(sw.buf(), r.key)
		b = binary.LittleEndian.AppendUint32(b, r.key2)
		b = binary.LittleEndian.AppendUint64(b, r.print)
		b = append(b, byte(r.kind))
		b = binary.AppendVarint(b, r.delta)
		b = binary.AppendVarint(b, r.time)
		b = binary.AppendVarint(b, r.value)
		b = append(b, byte(r.code), r.flags)
		if r.flags&recExpires != 0 {
			b = binary.AppendVarint(b, d.expires[seq])
		}
		sw.write(b)
	}
	if version >= snapV3 {
		sw.write(binary.AppendUvarint(sw.buf(), uint64(len(s.splits))))
		for _, name := range slices.Sorted(maps.Keys(s.splits)) {
			st := s.splits[name]
			b := appendString(sw.buf(), name)
			b = binary.AppendUvarint(b, uint64(st.n))
			b = binary.AppendUvarint(b, uint64(st.pending))
			b = binary.AppendUvarint(b, uint64(st.slots))
			sw.write(b)
		}
	}
	// The checksum is written raw, not through sw.write, so it is not
	// checksummed itself.
	if sw.err == nil {
		_, sw.err = sw.bw.Write(binary.LittleEndian.AppendUint32(sw.buf(), sw.crc))
	}
	if sw.err == nil {
		sw.err = sw.bw.Flush()
	}
	return cw.n, sw.err
}

// snapWriter checksums what it writes. Records are appended straight into
// bufio's free space (AvailableBuffer), so encoding doesn't copy twice.
type snapWriter struct {
	bw  *bufio.Writer
	crc uint32
	err error
}

func (sw *snapWriter) buf() []byte { return sw.bw.AvailableBuffer() }

func (sw *snapWriter) write(b []byte) {
	if sw.err != nil {
		return
	}
	sw.crc = crc32.Update(sw.crc, castagnoli, b)
	_, sw.err = sw.bw.Write(b)
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Restore replaces the whole state with the snapshot read from r, which must
// hold exactly one snapshot stream of either version (Restore reads r to its
// end). It validates everything, including the checksum, before touching
// the Machine: on error the Machine keeps its old state. The DedupTTL stays
// the Machine's own.
func (m *Machine) Restore(r io.Reader) error {
	s, err := readSnapshot(r)
	if err != nil {
		return err
	}
	// The heap holds exactly the counters' expiries; sorted, it is a heap.
	var exps []expiry
	gen := m.gen.Load()
	s.counters.each(s.counters.n, s.counters.actors, func(name []byte, c counter) {
		if c.expiry != 0 {
			exps = append(exps, expiry{at: c.expiry, name: string(name)})
		}
		if c.actors != nil {
			c.actors.gen = gen // the sets are new, and ours alone
		}
	})
	slices.SortFunc(exps, func(a, b expiry) int {
		if a.less(&b) {
			return -1
		}
		return 1 // names are unique, so never equal
	})
	oldCtrs := *m.ctrs
	*m.ctrs = *s.counters
	oldCtrs.free()
	m.expiries = exps
	m.lastTime = s.lastTime
	old := *m.dedup
	*m.dedup = *s.dedup
	old.free()
	m.splits = s.splits
	return nil
}

// restoredState is the state a snapshot stream holds, as readSnapshot
// builds it: the dedup table is built in place, record by record, not
// copied afterwards.
type restoredState struct {
	lastTime int64
	counters *ctrTable
	dedup    *dedupTable
	splits   map[string]splitState
}

func readSnapshot(r io.Reader) (*restoredState, error) {
	sr := snapReader{br: bufio.NewReaderSize(r, 64<<10)}

	var magic [len(snapMagic)]byte
	sr.full(magic[:])
	if sr.err == nil && string(magic[:]) != snapMagic {
		return nil, errSnapMagic
	}
	version := sr.byte()
	if sr.err == nil && (version < snapV1 || version > snapV4) {
		return nil, fmt.Errorf("%w %d", errSnapVersion, version)
	}
	s := &restoredState{lastTime: sr.varint(), counters: newCtrTable(), dedup: newDedupTable()}
	ok := false
	defer func() {
		if !ok {
			s.counters.free()
			s.dedup.free()
		}
	}()

	n := sr.uvarint()
	// Every writer writes counters in a strict order, by name (before
	// version 4 existed) or canonical (since), so each must come after the
	// one before in one of them all through the stream: that rules out
	// duplicates without looking each name up.
	var prev []byte
	var prevHash uint64
	byName, canonical := true, true
	for i := uint64(0); i < n && sr.err == nil; i++ {
		// A view of the reader's buffer: the table copies the name into
		// its arena, and nothing else keeps it.
		name := sr.view(maxStoredNameLen)
		var c counter
		if version == snapV1 {
			c.value = sr.varint()
		} else {
			sr.counterV2(&c)
		}
		switch {
		case sr.err != nil:
		case name == "" || (len(name) > MaxNameLen && !isSubName(name)):
			sr.corrupt(fmt.Sprintf("counter name %q", name))
		case !c.held():
			sr.corrupt(fmt.Sprintf("zero counter %q", name))
		default:
			h := fnvString(fnvOffset, name)
			if i > 0 {
				after := name > string(prev)
				byName = byName && after
				canonical = canonical && (h > prevHash || (h == prevHash && after))
				if !byName && !canonical {
					sr.corrupt(fmt.Sprintf("counter %q out of order (a duplicate?)", name))
					break
				}
			}
			s.counters.insertNew(name, c)
			prev, prevHash = append(prev[:0], name...), h
		}
	}
	if sr.err == nil {
		s.counters.index()
	}

	n = sr.uvarint()
	for i := uint64(0); i < n && sr.err == nil; i++ {
		var rec dedupRec
		var expiresAt int64
		switch version {
		case snapV1:
			rec, expiresAt = sr.recV1()
		case snapV2, snapV3:
			rec, expiresAt = sr.recV2()
		default:
			rec, expiresAt = sr.recV4()
		}
		if sr.err != nil {
			break
		}
		if _, dup := s.dedup.lookup(keyHash{lo: rec.key, hi: rec.key2}); dup {
			sr.corrupt(fmt.Sprintf("duplicate idempotency key (hash %016x%08x)", rec.key, rec.key2))
			break
		}
		s.dedup.push(rec, expiresAt)
	}

	s.splits = make(map[string]splitState)
	if version >= snapV3 {
		sr.splits(s.splits)
	}

	if sr.err != nil {
		return nil, sr.err
	}
	want := sr.crc
	var sum [4]byte
	sr.full(sum[:])
	if sr.err != nil {
		return nil, sr.err
	}
	if binary.LittleEndian.Uint32(sum[:]) != want {
		return nil, errSnapChecksum
	}
	switch _, err := sr.br.ReadByte(); err {
	case io.EOF:
		ok = true
		return s, nil
	case nil:
		return nil, errSnapTrailing
	default:
		return nil, fmt.Errorf("fsm: reading snapshot: %w", err)
	}
}

// splits reads a version 3 split table into dst.
func (sr *snapReader) splits(dst map[string]splitState) {
	n := sr.uvarint()
	for i := uint64(0); i < n && sr.err == nil; i++ {
		name := sr.str(MaxNameLen)
		k, pending, slots := sr.uvarint(), sr.uvarint(), sr.uvarint()
		switch {
		case sr.err != nil:
		case name == "" || strings.IndexByte(name, '/') >= 0:
			sr.corrupt(fmt.Sprintf("split counter name %q", name))
		case k < 1 || slots > MaxSplit || k > slots || (pending != 0 && (pending <= k || pending > slots)):
			sr.corrupt(fmt.Sprintf("split state n=%d pending=%d slots=%d of %q", k, pending, slots, name))
		default:
			st := splitState{n: uint16(k), pending: uint16(pending), slots: uint16(slots)}
			if _, dup := dst[name]; dup {
				sr.corrupt(fmt.Sprintf("duplicate split counter %q", name))
			}
			dst[name] = st
		}
	}
}

// counterV2 reads the rest of a version 2 counter record, after its name.
func (sr *snapReader) counterV2(c *counter) {
	flags := sr.byte()
	if sr.err == nil && flags&^(ctrValue|ctrExpiry|ctrActors) != 0 {
		sr.corrupt(fmt.Sprintf("counter flags %#x", flags))
	}
	if flags&ctrValue != 0 {
		if c.value = sr.varint(); sr.err == nil && c.value == 0 {
			sr.corrupt("counter value flagged but zero")
		}
	}
	if flags&ctrExpiry != 0 {
		if c.expiry = sr.varint(); sr.err == nil && c.expiry <= 0 {
			sr.corrupt(fmt.Sprintf("counter expiry %d", c.expiry))
		}
	}
	if flags&ctrActors == 0 || sr.err != nil {
		return
	}
	n := sr.uvarint()
	if sr.err == nil && n == 0 {
		sr.corrupt("empty actor set")
		return
	}
	set := &actorSet{}
	prev := ""
	for i := uint64(0); i < n && sr.err == nil; i++ {
		a := sr.str(MaxActorLen)
		switch {
		case sr.err != nil:
		case a == "":
			sr.corrupt("empty actor")
		case i > 0 && a <= prev:
			sr.corrupt(fmt.Sprintf("actor %q out of order", a))
		}
		set.add(a)
		prev = a
	}
	c.actors = set
}

// newRec is the record of op's first application, answered res at time.
func newRec(op *Op, res Result, time int64) (dedupRec, int64) {
	kh := hashKey(op.Key)
	r := dedupRec{
		key: kh.lo, key2: kh.hi, print: opPrint(op), delta: op.Delta, time: time,
		value: res.Value, code: res.Code, kind: op.Kind,
	}
	if res.Changed {
		r.flags |= recChanged
	}
	return r, res.ExpiresAt
}

// recV1 reads a version 1 dedup record.
func (sr *snapReader) recV1() (dedupRec, int64) {
	var op Op
	op.Key = sr.str(MaxKeyLen)
	op.Kind = OpKind(sr.byte())
	op.Name = sr.str(maxStoredNameLen)
	op.Delta = sr.varint()
	time := sr.varint()
	res := Result{Value: sr.varint(), Code: Code(sr.byte())}
	if sr.err != nil {
		return dedupRec{}, 0
	}
	switch err := op.Validate(); {
	case op.Key == "":
		sr.corrupt("empty idempotency key")
	case err != nil:
		sr.corrupt(err.Error())
	case op.Kind != OpAdd:
		sr.corrupt(fmt.Sprintf("op kind %d in a version 1 snapshot", op.Kind))
	case res.Code != OK && res.Code != ErrOverflow:
		// Only results of applied adds are remembered.
		sr.corrupt(fmt.Sprintf("remembered result code %d", res.Code))
	}
	return newRec(&op, res, time)
}

// recV2 reads a version 2 (or 3) dedup record.
func (sr *snapReader) recV2() (dedupRec, int64) {
	enc := sr.str(maxOpLenV2)
	time := sr.varint()
	var res Result
	res.Value = sr.varint()
	res.ExpiresAt = sr.varint()
	res.Code = Code(sr.byte())
	changed := sr.byte()
	if sr.err != nil {
		return dedupRec{}, 0
	}
	d := decoder{b: []byte(enc)}
	var op Op
	d.opV2(&op)
	if d.err == nil && len(d.b) != 0 {
		d.err = errTrailing
	}
	res.Changed = changed == 1
	switch {
	case d.err != nil:
		sr.corrupt("remembered op: " + d.err.Error())
	case op.Key == "":
		sr.corrupt("empty idempotency key")
	case op.Kind >= OpSplitBegin:
		sr.corrupt(fmt.Sprintf("remembered op kind %d", op.Kind))
	case res.Code != OK && res.Code != ErrOverflow && res.Code != ErrOutOfBounds:
		// Only results of applied ops are remembered.
		sr.corrupt(fmt.Sprintf("remembered result code %d", res.Code))
	case changed > 1:
		sr.corrupt(fmt.Sprintf("remembered changed %d", changed))
	case res.Changed && (op.Kind == OpAdd || res.Code != OK):
		sr.corrupt("remembered changed on an add or an error")
	case res.Code == ErrOutOfBounds && !op.HasMin && !op.HasMax:
		sr.corrupt("remembered out of bounds for an unbounded op")
	case res.ExpiresAt < 0:
		sr.corrupt(fmt.Sprintf("remembered expiry %d", res.ExpiresAt))
	}
	return newRec(&op, res, time)
}

// recV4 reads a version 4 dedup record.
func (sr *snapReader) recV4() (dedupRec, int64) {
	var fixed [20]byte
	sr.full(fixed[:])
	r := dedupRec{
		key:   binary.LittleEndian.Uint64(fixed[:]),
		key2:  binary.LittleEndian.Uint32(fixed[8:]),
		print: binary.LittleEndian.Uint64(fixed[12:]),
	}
	r.kind = OpKind(sr.byte())
	r.delta = sr.varint()
	r.time = sr.varint()
	r.value = sr.varint()
	r.code = Code(sr.byte())
	r.flags = sr.byte()
	var expiresAt int64
	if r.flags&recExpires != 0 {
		expiresAt = sr.varint()
	}
	if sr.err != nil {
		return dedupRec{}, 0
	}
	changed := r.flags&recChanged != 0
	switch {
	case r.kind != OpAdd && r.kind != OpActorAdd && r.kind != OpActorRemove:
		sr.corrupt(fmt.Sprintf("remembered op kind %d", r.kind))
	case r.code != OK && r.code != ErrOverflow && r.code != ErrOutOfBounds:
		sr.corrupt(fmt.Sprintf("remembered result code %d", r.code))
	case r.flags&^(recChanged|recExpires) != 0:
		sr.corrupt(fmt.Sprintf("remembered flags %#x", r.flags))
	case changed && (r.kind == OpAdd || r.code != OK):
		sr.corrupt("remembered changed on an add or an error")
	case r.kind != OpAdd && r.delta != 0:
		sr.corrupt("remembered delta on an actor op")
	case r.flags&recExpires != 0 && expiresAt <= 0:
		sr.corrupt(fmt.Sprintf("remembered expiry %d", expiresAt))
	}
	r.flags &^= recExpires // push sets it again from expiresAt
	return r, expiresAt
}

// snapReader reads the snapshot fields, checksumming every byte it consumes.
// Its error is sticky: after the first failure reads return zero values.
type snapReader struct {
	br  *bufio.Reader
	crc uint32
	err error
	tmp [max(maxStoredNameLen, MaxKeyLen, MaxActorLen, maxOpLenV2)]byte
	vb  [maxStoredNameLen]byte // view's, apart from tmp: a counter's name outlives reading its actors
}

func (sr *snapReader) fail(err error) {
	if sr.err != nil {
		return
	}
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		err = errSnapTruncated
	} else if !errors.Is(err, errSnapCorrupt) {
		err = fmt.Errorf("fsm: reading snapshot: %w", err)
	}
	sr.err = err
}

func (sr *snapReader) corrupt(why string) {
	sr.fail(fmt.Errorf("%w: %s", errSnapCorrupt, why))
}

// full fills p from the stream. (Reading the trailing checksum through it
// also updates sr.crc, harmlessly: the caller takes sr.crc before.)
func (sr *snapReader) full(p []byte) {
	if sr.err != nil {
		return
	}
	if _, err := io.ReadFull(sr.br, p); err != nil {
		sr.fail(err)
		return
	}
	sr.crc = crc32.Update(sr.crc, castagnoli, p)
}

func (sr *snapReader) byte() byte {
	var b [1]byte
	sr.full(b[:])
	return b[0]
}

func (sr *snapReader) uvarint() uint64 {
	if sr.err != nil {
		return 0
	}
	b := sr.tmp[:0]
	for len(b) < binary.MaxVarintLen64 {
		c, err := sr.br.ReadByte()
		if err != nil {
			sr.fail(err)
			return 0
		}
		b = append(b, c)
		if c < 0x80 {
			v, n := binary.Uvarint(b)
			if n <= 0 {
				break // overflows 64 bits
			}
			sr.crc = crc32.Update(sr.crc, castagnoli, b)
			return v
		}
	}
	sr.corrupt("malformed varint")
	return 0
}

func (sr *snapReader) varint() int64 {
	u := sr.uvarint()
	x := int64(u >> 1)
	if u&1 != 0 {
		x = ^x
	}
	return x
}

// view is str without the copy, for limit <= maxStoredNameLen: the string
// shares a buffer of sr's and is valid until the next view.
func (sr *snapReader) view(limit int) string {
	p := sr.bytes(sr.vb[:], limit)
	if len(p) == 0 {
		return ""
	}
	return unsafe.String(&p[0], len(p))
}

// str reads a length-prefixed string, refusing lengths over limit before
// reading (or allocating) anything.
func (sr *snapReader) str(limit int) string { return string(sr.bytes(sr.tmp[:], limit)) }

// bytes reads a length-prefixed string into buf (of at least limit bytes)
// and returns it; nil after a failure.
func (sr *snapReader) bytes(buf []byte, limit int) []byte {
	n := sr.uvarint()
	if sr.err != nil {
		return nil
	}
	if n > uint64(limit) {
		sr.corrupt(fmt.Sprintf("string of %d bytes", n))
		return nil
	}
	p := buf[:n]
	sr.full(p)
	if sr.err != nil {
		return nil
	}
	return p
}

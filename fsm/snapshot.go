package fsm

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"slices"
)

// Snapshot stream, version 1:
//
//	magic     8 bytes "TALLYFSM"
//	version   byte = 1
//	lastTime  varint
//	counters  uvarint count, then per counter (sorted by name):
//	            name uvarint length + bytes, value varint (never 0)
//	dedup     uvarint count, then per record (oldest first: the FIFO order
//	          that drives expiry):
//	            key uvarint length + bytes, kind byte,
//	            name uvarint length + bytes, delta varint,
//	            time varint (entry Time when the key was first seen),
//	            value varint, code byte (the first Result)
//	crc       4 bytes little-endian: CRC-32C of everything above
//
// Varints are zigzag for signed values, as in encoding/binary. The stream
// must end right after the checksum.
//
// Counters are sorted so that replicas with equal state write identical
// bytes, which makes comparing replicas (and testing) a byte comparison.
const (
	snapMagic   = "TALLYFSM"
	snapVersion = 1
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
// while Apply goes on (and several WriteTo calls may run at once).
type Snapshot struct {
	lastTime int64
	counters map[string]int64
	dedup    []dedupRec // oldest first
}

// Snapshot copies the state. It runs on the apply goroutine, so it only
// copies (a map clone and one or two slice copies; strings are immutable and
// shared); the sorting and encoding are left to WriteTo.
func (m *Machine) Snapshot() *Snapshot {
	s := &Snapshot{
		lastTime: m.lastTime,
		counters: maps.Clone(m.counters),
		dedup:    make([]dedupRec, 0, m.tail-m.head),
	}
	if m.head != m.tail {
		// The live records are one run of the ring, or two when they wrap.
		mask := uint64(len(m.ring) - 1)
		i, j := int(m.head&mask), int(m.tail&mask)
		if i < j {
			s.dedup = append(s.dedup, m.ring[i:j]...)
		} else {
			s.dedup = append(s.dedup, m.ring[i:]...)
			s.dedup = append(s.dedup, m.ring[:j]...)
		}
	}
	return s
}

// WriteTo writes the snapshot stream to w and returns the bytes written.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	sw := snapWriter{bw: bufio.NewWriterSize(cw, 64<<10)}

	b := sw.buf()
	b = append(b, snapMagic...)
	b = append(b, snapVersion)
	b = binary.AppendVarint(b, s.lastTime)
	b = binary.AppendUvarint(b, uint64(len(s.counters)))
	sw.write(b)
	for _, name := range slices.Sorted(maps.Keys(s.counters)) {
		b := appendString(sw.buf(), name)
		b = binary.AppendVarint(b, s.counters[name])
		sw.write(b)
	}
	sw.write(binary.AppendUvarint(sw.buf(), uint64(len(s.dedup))))
	for i := range s.dedup {
		r := &s.dedup[i]
		b := appendString(sw.buf(), r.key)
		b = append(b, byte(r.kind))
		b = appendString(b, r.name)
		b = binary.AppendVarint(b, r.delta)
		b = binary.AppendVarint(b, r.time)
		b = binary.AppendVarint(b, r.value)
		b = append(b, byte(r.code))
		sw.write(b)
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

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
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
// hold exactly one snapshot stream (Restore reads r to its end). It validates
// everything, including the checksum, before touching the Machine: on error
// the Machine keeps its old state. The DedupTTL stays the Machine's own.
func (m *Machine) Restore(r io.Reader) error {
	s, err := readSnapshot(r)
	if err != nil {
		return err
	}
	n := len(s.dedup)
	ring := make([]dedupRec, ringSize(n))
	copy(ring, s.dedup)
	keys := make(map[string]uint64, n)
	for i := range s.dedup {
		keys[s.dedup[i].key] = uint64(i)
	}
	m.counters = s.counters
	m.lastTime = s.lastTime
	m.ring, m.keys = ring, keys
	m.head, m.tail = 0, uint64(n)
	return nil
}

// maxPrealloc caps how much a count read from the stream may preallocate:
// a corrupt count must not make Restore allocate gigabytes before it finds
// out the stream is short. Larger states simply grow as they are read.
const maxPrealloc = 1 << 16

func readSnapshot(r io.Reader) (*Snapshot, error) {
	sr := snapReader{br: bufio.NewReaderSize(r, 64<<10)}

	var magic [len(snapMagic)]byte
	sr.full(magic[:])
	if sr.err == nil && string(magic[:]) != snapMagic {
		return nil, errSnapMagic
	}
	if v := sr.byte(); sr.err == nil && v != snapVersion {
		return nil, fmt.Errorf("%w %d", errSnapVersion, v)
	}
	s := &Snapshot{lastTime: sr.varint()}

	n := sr.uvarint()
	s.counters = make(map[string]int64, min(n, maxPrealloc))
	for i := uint64(0); i < n && sr.err == nil; i++ {
		name := sr.str(MaxNameLen)
		v := sr.varint()
		switch {
		case sr.err != nil:
		case name == "":
			sr.corrupt("empty counter name")
		case v == 0:
			sr.corrupt(fmt.Sprintf("zero counter %q", name))
		default:
			if _, dup := s.counters[name]; dup {
				sr.corrupt(fmt.Sprintf("duplicate counter %q", name))
			}
			s.counters[name] = v
		}
	}

	n = sr.uvarint()
	s.dedup = make([]dedupRec, 0, min(n, maxPrealloc))
	seen := make(map[string]struct{}, min(n, maxPrealloc))
	for i := uint64(0); i < n && sr.err == nil; i++ {
		var rec dedupRec
		rec.key = sr.str(MaxKeyLen)
		rec.kind = OpKind(sr.byte())
		rec.name = sr.str(MaxNameLen)
		rec.delta = sr.varint()
		rec.time = sr.varint()
		rec.value = sr.varint()
		rec.code = Code(sr.byte())
		if sr.err != nil {
			break
		}
		_, dup := seen[rec.key]
		invalid := Op{Kind: rec.kind, Name: rec.name, Delta: rec.delta, Key: rec.key}.Validate()
		switch {
		case rec.key == "":
			sr.corrupt("empty idempotency key")
		case dup:
			sr.corrupt(fmt.Sprintf("duplicate idempotency key %q", rec.key))
		case invalid != nil:
			sr.corrupt(invalid.Error())
		case rec.code != OK && rec.code != ErrOverflow:
			// Only results of applied adds are remembered.
			sr.corrupt(fmt.Sprintf("remembered result code %d", rec.code))
		}
		seen[rec.key] = struct{}{}
		s.dedup = append(s.dedup, rec)
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
		return s, nil
	case nil:
		return nil, errSnapTrailing
	default:
		return nil, fmt.Errorf("fsm: reading snapshot: %w", err)
	}
}

// snapReader reads the snapshot fields, checksumming every byte it consumes.
// Its error is sticky: after the first failure reads return zero values.
type snapReader struct {
	br  *bufio.Reader
	crc uint32
	err error
	tmp [max(MaxNameLen, MaxKeyLen)]byte
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

// str reads a length-prefixed string, refusing lengths over limit before
// reading (or allocating) anything.
func (sr *snapReader) str(limit int) string {
	n := sr.uvarint()
	if sr.err != nil {
		return ""
	}
	if n > uint64(limit) {
		sr.corrupt(fmt.Sprintf("string of %d bytes", n))
		return ""
	}
	p := sr.tmp[:n]
	sr.full(p)
	if sr.err != nil {
		return ""
	}
	return string(p)
}

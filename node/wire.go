package node

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
)

// The node-to-node forwarding protocol. A connection carries frames in
// both directions: [u32 length][payload]. A payload is a frame type byte,
// a count, then that many requests (dialer → server) or responses
// (server → dialer), matched by id. Many concurrent requests bound for
// the same leader share one frame, so a forwarded increment costs a few
// dozen bytes, not an HTTP request.

const (
	frameRequests  = 1
	frameResponses = 2

	reqWrite  = 1
	reqRead   = 2 // counter values with their expiry
	reqMember = 3 // is an actor in a counter's actor set
	reqSplit  = 4 // run the split protocol on a counter's home shard

	statusOK          = 0
	statusNotLeader   = 1 // nothing done; leader hint follows
	statusUnavailable = 2 // nothing done
	statusUnknown     = 3 // a write that may or may not have committed
	statusError       = 4 // nothing done; message follows

	maxFrame = 64 << 20
)

var errBadFrame = errors.New("forward: malformed frame")

// enc appends protocol values to a byte slice.
type enc struct{ b []byte }

func (e *enc) u8(v uint8)     { e.b = append(e.b, v) }
func (e *enc) uv(v uint64)    { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) v(v int64)      { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) str(s string)   { e.uv(uint64(len(s))); e.b = append(e.b, s...) }
func (e *enc) bytes(p []byte) { e.uv(uint64(len(p))); e.b = append(e.b, p...) }
func (e *enc) startFrame(t uint8, n int) {
	e.b = append(e.b[:0], 0, 0, 0, 0, t)
	e.uv(uint64(n))
}
func (e *enc) finishFrame() []byte {
	binary.BigEndian.PutUint32(e.b, uint32(len(e.b)-4))
	return e.b
}

// dec reads protocol values; the first error sticks and every later read
// returns zero values, so callers check err once at the end.
type dec struct {
	b   []byte
	err error
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = errBadFrame
	}
	d.b = nil
}

func (d *dec) u8() uint8 {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *dec) uv() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) v() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) raw() []byte {
	n := d.uv()
	if n > uint64(len(d.b)) {
		d.fail()
		return nil
	}
	p := d.b[:n:n]
	d.b = d.b[n:]
	return p
}

func (d *dec) str() string { return string(d.raw()) }

// count reads a length that must be plausible for the bytes left, so a
// corrupt frame cannot make the reader allocate without bound.
func (d *dec) count() int {
	n := d.uv()
	if n > uint64(len(d.b)) || n > math.MaxInt32 {
		d.fail()
		return 0
	}
	return int(n)
}

// readFrame reads one frame's payload into buf (grown as needed).
func readFrame(r io.Reader, buf []byte) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return buf, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > maxFrame {
		return buf, errBadFrame
	}
	if cap(buf) < int(n) {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	_, err := io.ReadFull(r, buf)
	return buf, err
}

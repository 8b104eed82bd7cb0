// Package codec is the compact binary encoding of tally's own node-to-node
// messages (forwarded requests, gossiped node meta): varints, zigzag
// varints and length-prefixed strings, appended to or read from a byte
// slice.
package codec

import (
	"encoding/binary"
	"errors"
	"math"
)

// ErrMalformed is the error a Decoder keeps once a read ran past the end
// or found a malformed value.
var ErrMalformed = errors.New("codec: malformed encoding")

// Encoder appends values to B.
type Encoder struct{ B []byte }

func (e *Encoder) U8(v uint8)     { e.B = append(e.B, v) }
func (e *Encoder) Uv(v uint64)    { e.B = binary.AppendUvarint(e.B, v) }
func (e *Encoder) V(v int64)      { e.B = binary.AppendVarint(e.B, v) }
func (e *Encoder) Str(s string)   { e.Uv(uint64(len(s))); e.B = append(e.B, s...) }
func (e *Encoder) Bytes(p []byte) { e.Uv(uint64(len(p))); e.B = append(e.B, p...) }

// Bool encodes b as one byte, 0 or 1.
func (e *Encoder) Bool(b bool) {
	if b {
		e.U8(1)
	} else {
		e.U8(0)
	}
}

// Decoder reads values from B; the first error sticks in Err and every
// later read returns zero values, so callers check Err once at the end.
type Decoder struct {
	B   []byte
	Err error
}

// Fail marks the input malformed.
func (d *Decoder) Fail() {
	if d.Err == nil {
		d.Err = ErrMalformed
	}
	d.B = nil
}

func (d *Decoder) U8() uint8 {
	if len(d.B) < 1 {
		d.Fail()
		return 0
	}
	v := d.B[0]
	d.B = d.B[1:]
	return v
}

func (d *Decoder) Uv() uint64 {
	v, n := binary.Uvarint(d.B)
	if n <= 0 {
		d.Fail()
		return 0
	}
	d.B = d.B[n:]
	return v
}

func (d *Decoder) V() int64 {
	v, n := binary.Varint(d.B)
	if n <= 0 {
		d.Fail()
		return 0
	}
	d.B = d.B[n:]
	return v
}

// Raw reads a length-prefixed byte string without copying it.
func (d *Decoder) Raw() []byte {
	n := d.Uv()
	if n > uint64(len(d.B)) {
		d.Fail()
		return nil
	}
	p := d.B[:n:n]
	d.B = d.B[n:]
	return p
}

func (d *Decoder) Str() string { return string(d.Raw()) }

// Count reads a length that must be plausible for the bytes left, so
// corrupt input cannot make the reader allocate without bound.
func (d *Decoder) Count() int {
	n := d.Uv()
	if n > uint64(len(d.B)) || n > math.MaxInt32 {
		d.Fail()
		return 0
	}
	return int(n)
}

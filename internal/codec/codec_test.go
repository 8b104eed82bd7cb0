package codec

import (
	"math"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var e Encoder
	e.U8(7)
	e.Uv(math.MaxUint64)
	e.V(math.MinInt64)
	e.Str("héllo")
	e.Bytes([]byte{0, 1, 2})
	e.Bool(true)
	e.Bool(false)
	d := Decoder{B: e.B}
	if v := d.U8(); v != 7 {
		t.Errorf("u8 %d", v)
	}
	if v := d.Uv(); v != math.MaxUint64 {
		t.Errorf("uvarint %d", v)
	}
	if v := d.V(); v != math.MinInt64 {
		t.Errorf("varint %d", v)
	}
	if v := d.Str(); v != "héllo" {
		t.Errorf("str %q", v)
	}
	if v := d.Raw(); string(v) != "\x00\x01\x02" {
		t.Errorf("bytes %q", v)
	}
	if a, b := d.U8(), d.U8(); a != 1 || b != 0 {
		t.Errorf("bools %d %d", a, b)
	}
	if d.Err != nil || len(d.B) != 0 {
		t.Errorf("err %v, %d bytes left", d.Err, len(d.B))
	}
}

// TestTruncatedInputSticks: every prefix of a valid encoding fails (once
// something is missing) with ErrMalformed instead of panicking, and the
// error stays.
func TestTruncatedInputSticks(t *testing.T) {
	var e Encoder
	e.Str("counter")
	e.Uv(300)
	e.V(-5)
	for n := 0; n < len(e.B); n++ {
		d := Decoder{B: e.B[:n]}
		d.Str()
		d.Uv()
		d.V()
		if d.Err != ErrMalformed {
			t.Fatalf("prefix of %d bytes decoded with err %v", n, d.Err)
		}
		if d.U8() != 0 || d.Err != ErrMalformed {
			t.Fatalf("a read after the error returned data or cleared it")
		}
	}
}

// TestCountIsBoundedByInput: a length larger than the bytes left is
// refused before anyone allocates for it.
func TestCountIsBoundedByInput(t *testing.T) {
	var e Encoder
	e.Uv(1 << 40)
	d := Decoder{B: e.B}
	if n := d.Count(); n != 0 || d.Err != ErrMalformed {
		t.Fatalf("count %d, err %v", n, d.Err)
	}
}

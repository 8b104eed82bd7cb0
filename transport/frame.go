package transport

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frames on raft connections (KindRaftNet and KindSnapshot) are
//
//	uint32 big-endian body length L, 1 ≤ L ≤ the reader's limit
//	L bytes of body (codec.go)
//
// The length comes first so a reader can skip nothing and trust nothing:
// it checks L against its limit before reading, and grows the body buffer
// only as bytes actually arrive, so a peer that announces a huge frame and
// then stalls or lies costs no more memory than it sent.
const frameHeader = 4

// frameGrowStep is the largest buffer readFrame allocates before any of the
// body has arrived; larger frames grow geometrically from there.
const frameGrowStep = 64 << 10

var errFrameSize = errors.New("transport: frame length out of range")

// beginFrame appends a placeholder length to b and returns the offset to
// hand to endFrame once the body has been appended.
func beginFrame(b []byte) ([]byte, int) {
	return append(b, 0, 0, 0, 0), len(b)
}

// endFrame patches the length of the frame that starts at off. A body
// longer than limit is cut off again (b is returned as it was before
// beginFrame) and reported, so an oversized message never reaches a peer
// that would reject it.
func endFrame(b []byte, off, limit int) ([]byte, error) {
	n := len(b) - off - frameHeader
	if n < 1 || n > limit {
		return b[:off], fmt.Errorf("%w: %d bytes, limit %d", errFrameSize, n, limit)
	}
	binary.BigEndian.PutUint32(b[off:], uint32(n))
	return b, nil
}

// readFrame reads one frame body from r into a fresh buffer. Decoded
// messages alias the buffer (log entry data in particular), so it is never
// reused.
func readFrame(r *bufio.Reader, limit int) ([]byte, error) {
	var hdr [frameHeader]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n < 1 || n > limit {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", errFrameSize, n, limit)
	}
	if n <= frameGrowStep {
		b := make([]byte, n)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, unexpectedEOF(err)
		}
		return b, nil
	}
	b := make([]byte, 0, frameGrowStep)
	for len(b) < n {
		if len(b) == cap(b) {
			b = append(b, make([]byte, min(cap(b), n-len(b)))...)[:len(b)]
		}
		end := min(cap(b), n)
		m, err := io.ReadFull(r, b[len(b):end])
		b = b[:len(b)+m]
		if err != nil {
			return nil, unexpectedEOF(err)
		}
	}
	return b, nil
}

// unexpectedEOF turns an EOF inside a frame into io.ErrUnexpectedEOF: only
// an EOF between frames is a clean end of the stream.
func unexpectedEOF(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

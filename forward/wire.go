package forward

import (
	"encoding/binary"
	"errors"
	"io"
	"slices"

	"tally/internal/codec"
)

// The wire format of node-to-node forwarding. A connection carries frames
// in both directions: [u32 length][payload]. A payload is a frame type
// byte, a count, then that many requests (dialer → server) or responses
// (server → dialer), matched by id. A request is [id][kind][shard]
// [budget ms][body]; a response is [id][status][body] (messages.go has
// the bodies). Many concurrent requests bound for the same leader share
// one frame, so a forwarded increment costs a few dozen bytes, not an
// HTTP request.

const (
	frameRequests  = 1
	frameResponses = 2

	reqWrite   = 1
	reqRead    = 2  // counter values with their expiry
	reqMember  = 3  // is an actor in a counter's actor set
	reqSplit   = 4  // run the split protocol on a counter's home shard
	reqCard    = 5  // the size of a counter's actor set
	reqReplica = 6  // which incarnation of a node the receiver knows as a replica
	reqConfig  = 7  // a shard's raft configuration
	reqChange  = 8  // change a shard's configuration (its leader does)
	reqHost    = 9  // open or close a node's replica of a shard
	reqReadAt  = 10 // counter values and the raft index they reflect
	reqChanges = 11 // a page of a replica's recent changes
	reqDump    = 12 // every counter of a replica and the index it is at

	statusOK          = 0
	statusNotLeader   = 1 // nothing done; leader hint follows
	statusUnavailable = 2 // nothing done
	statusUnknown     = 3 // a write that may or may not have committed
	statusError       = 4 // nothing done; message follows
	statusKeysFull    = 5 // nothing done: the leader's idempotency key tables are full

	maxFrame = 64 << 20
)

var errBadFrame = errors.New("forward: malformed frame")

type (
	enc = codec.Encoder
	dec = codec.Decoder
)

// startFrame begins a frame of type t holding n messages in e, reusing its
// buffer; finishFrame fills in the length and returns the frame.
func startFrame(e *enc, t uint8, n int) {
	e.B = append(e.B[:0], 0, 0, 0, 0, t)
	e.Uv(uint64(n))
}

func finishFrame(e *enc) []byte {
	binary.BigEndian.PutUint32(e.B, uint32(len(e.B)-4))
	return e.B
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
	if cap(buf) >= int(n) {
		buf = buf[:n]
		_, err := io.ReadFull(r, buf)
		return buf, err
	}
	// Grow with what arrives, at most doubling: a length alone, from a
	// peer that never sends the bytes, cannot make this allocate much.
	buf = buf[:0]
	for len(buf) < int(n) {
		chunk := min(int(n)-len(buf), max(len(buf), 64<<10))
		buf = slices.Grow(buf, chunk)
		got, err := io.ReadFull(r, buf[len(buf):len(buf)+chunk])
		buf = buf[:len(buf)+got]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}

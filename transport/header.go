package transport

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Kind says what a connection carries; together with the shard it selects
// the listener an accepted connection is handed to.
type Kind uint8

const (
	KindRaft    Kind = 1 // a raft.NetworkTransport connection for one shard
	KindForward Kind = 2 // node-to-node request forwarding (shard field unused, 0)
	// KindRaftNet carries one node's raft requests of every shard to
	// another node, and their responses (RaftNet; shard field 0).
	KindRaftNet Kind = 3
	// KindSnapshot carries one InstallSnapshot stream (RaftNet; the shard
	// is in the request, the header's field is 0).
	KindSnapshot Kind = 4
)

func (k Kind) String() string {
	switch k {
	case KindRaft:
		return "raft"
	case KindForward:
		return "forward"
	case KindRaftNet:
		return "raftnet"
	case KindSnapshot:
		return "snapshot"
	default:
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
}

// Wire header, written once by the dialer before any payload:
//
//	offset size  field
//	0      1     magic/version byte (headerMagic)
//	1      1     kind
//	2      4     shard, big-endian uint32 (0 for KindForward)
//	6      2     n = length of the dialer's advertised address, big-endian uint16
//	8      n     the dialer's advertised address, "host:port"
//
// The dialer's address is in the header because the remote port of an
// accepted TCP connection is ephemeral and says nothing about which node
// dialed; fault injection needs to know.
const (
	// headerMagic doubles as the protocol version: any incompatible change to
	// the header gets a new byte, so old and new nodes refuse each other
	// cleanly instead of misparsing.
	headerMagic byte = 0xA1
)

const (
	headerFixed   = 8
	maxAddrLength = 512 // a DNS name (253) plus port, with room to spare
)

var errBadHeader = errors.New("transport: bad connection header")

type header struct {
	kind  Kind
	shard uint32
	addr  string // the dialer's advertised address
}

// marshal encodes h as one buffer so it goes out in a single write.
func (h header) marshal() ([]byte, error) {
	if len(h.addr) == 0 || len(h.addr) > maxAddrLength {
		return nil, fmt.Errorf("transport: advertised address length %d out of range 1..%d", len(h.addr), maxAddrLength)
	}
	b := make([]byte, headerFixed+len(h.addr))
	b[0] = headerMagic
	b[1] = byte(h.kind)
	binary.BigEndian.PutUint32(b[2:6], h.shard)
	binary.BigEndian.PutUint16(b[6:8], uint16(len(h.addr)))
	copy(b[headerFixed:], h.addr)
	return b, nil
}

// readHeader reads exactly one header from r and nothing more, so the
// payload that follows is left intact for whoever gets the connection.
func readHeader(r io.Reader) (header, error) {
	var fixed [headerFixed]byte
	if _, err := io.ReadFull(r, fixed[:]); err != nil {
		return header{}, err
	}
	if fixed[0] != headerMagic {
		return header{}, fmt.Errorf("%w: magic/version 0x%02x", errBadHeader, fixed[0])
	}
	h := header{
		kind:  Kind(fixed[1]),
		shard: binary.BigEndian.Uint32(fixed[2:6]),
	}
	if h.kind < KindRaft || h.kind > KindSnapshot {
		return header{}, fmt.Errorf("%w: unknown %v", errBadHeader, h.kind)
	}
	n := int(binary.BigEndian.Uint16(fixed[6:8]))
	if n == 0 || n > maxAddrLength {
		return header{}, fmt.Errorf("%w: address length %d", errBadHeader, n)
	}
	addr := make([]byte, n)
	if _, err := io.ReadFull(r, addr); err != nil {
		return header{}, err
	}
	h.addr = string(addr)
	return h, nil
}

package transport

//lint:file-ignore SA1019 raft still sets and falls back on Leader and Candidate, so they travel too

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// The body of a frame (frame.go) on a KindRaftNet or KindSnapshot
// connection. Everything is hand-encoded, append-style: integers as
// uvarints, byte strings as a uvarint length and the bytes, booleans as
// bit flags.
//
// A request:
//
//	byte     message type (msg*Req)
//	uvarint  request id, chosen by the sender, echoed by the response
//	uvarint  shard
//	...      the request's fields
//
// A response:
//
//	byte     message type (msg*Resp, answering the request's type)
//	uvarint  request id
//	string   error text ("" = none), as raft's RPC.Respond error
//	...      the response's fields
//
// Every RPCHeader is protocol version (uvarint), ID and Addr (strings).
const (
	msgAppendReq       byte = 1
	msgAppendResp      byte = 2
	msgVoteReq         byte = 3
	msgVoteResp        byte = 4
	msgPreVoteReq      byte = 5
	msgPreVoteResp     byte = 6
	msgTimeoutNowReq   byte = 7
	msgTimeoutNowResp  byte = 8
	msgSnapshotReq     byte = 9
	msgSnapshotResp    byte = 10
	msgHeartbeatReq    byte = 11 // an AppendEntries with no entries and no log position; answered by msgAppendResp
	maxEntriesPerFrame      = 1 << 20
	// minEntrySize is the fewest bytes one encoded log entry can take
	// (index, term, type, data, extensions, appended-at: one byte each), so
	// an entry count is checked against the bytes left before allocating.
	minEntrySize = 6
)

var errMalformed = errors.New("transport: malformed message")

// responseType is the message type that answers a request of type t.
func responseType(t byte) byte {
	if t == msgHeartbeatReq {
		return msgAppendResp
	}
	return t + 1
}

// isHeartbeat is NetworkTransport's test for a heartbeat, which raft sends
// with a term and a leader and nothing else.
func isHeartbeat(a *raft.AppendEntriesRequest) bool {
	leader := a.RPCHeader.Addr
	if len(leader) == 0 {
		leader = a.Leader
	}
	return a.Term != 0 && leader != nil && a.PrevLogEntry == 0 && a.PrevLogTerm == 0 &&
		len(a.Entries) == 0 && a.LeaderCommitIndex == 0
}

// requestType is the message type a raft request is sent as.
func requestType(cmd any) (byte, error) {
	switch c := cmd.(type) {
	case *raft.AppendEntriesRequest:
		if isHeartbeat(c) {
			return msgHeartbeatReq, nil
		}
		return msgAppendReq, nil
	case *raft.RequestVoteRequest:
		return msgVoteReq, nil
	case *raft.RequestPreVoteRequest:
		return msgPreVoteReq, nil
	case *raft.TimeoutNowRequest:
		return msgTimeoutNowReq, nil
	case *raft.InstallSnapshotRequest:
		return msgSnapshotReq, nil
	}
	return 0, fmt.Errorf("transport: cannot encode request %T", cmd)
}

// appendRequest appends a request body for cmd to b.
func appendRequest(b []byte, id uint64, shard uint32, cmd any) ([]byte, error) {
	t, err := requestType(cmd)
	if err != nil {
		return b, err
	}
	b = append(b, t)
	b = binary.AppendUvarint(b, id)
	b = binary.AppendUvarint(b, uint64(shard))
	switch c := cmd.(type) {
	case *raft.AppendEntriesRequest:
		b = appendHeader(b, c.RPCHeader)
		b = binary.AppendUvarint(b, c.Term)
		b = appendBytes(b, c.Leader)
		if t == msgHeartbeatReq {
			return b, nil
		}
		b = binary.AppendUvarint(b, c.PrevLogEntry)
		b = binary.AppendUvarint(b, c.PrevLogTerm)
		b = binary.AppendUvarint(b, c.LeaderCommitIndex)
		b = binary.AppendUvarint(b, uint64(len(c.Entries)))
		for _, e := range c.Entries {
			b = appendLog(b, e)
		}
	case *raft.RequestVoteRequest:
		b = appendHeader(b, c.RPCHeader)
		b = binary.AppendUvarint(b, c.Term)
		b = appendBytes(b, c.Candidate)
		b = binary.AppendUvarint(b, c.LastLogIndex)
		b = binary.AppendUvarint(b, c.LastLogTerm)
		b = append(b, flags(c.LeadershipTransfer, false))
	case *raft.RequestPreVoteRequest:
		b = appendHeader(b, c.RPCHeader)
		b = binary.AppendUvarint(b, c.Term)
		b = binary.AppendUvarint(b, c.LastLogIndex)
		b = binary.AppendUvarint(b, c.LastLogTerm)
	case *raft.TimeoutNowRequest:
		b = appendHeader(b, c.RPCHeader)
	case *raft.InstallSnapshotRequest:
		if c.Size < 0 {
			return b, fmt.Errorf("transport: snapshot size %d", c.Size)
		}
		b = appendHeader(b, c.RPCHeader)
		b = binary.AppendUvarint(b, uint64(c.SnapshotVersion))
		b = binary.AppendUvarint(b, c.Term)
		b = appendBytes(b, c.Leader)
		b = binary.AppendUvarint(b, c.LastLogIndex)
		b = binary.AppendUvarint(b, c.LastLogTerm)
		b = appendBytes(b, c.Peers)
		b = appendBytes(b, c.Configuration)
		b = binary.AppendUvarint(b, c.ConfigurationIndex)
		b = binary.AppendUvarint(b, uint64(c.Size))
	}
	return b, nil
}

// appendResponse appends the response body answering a request of type
// reqType. resp may be nil (raft answered with an error only); the zero
// response of the expected type is sent then.
func appendResponse(b []byte, reqType byte, id uint64, resp any, rpcErr error) ([]byte, error) {
	t := responseType(reqType)
	b = append(b, t)
	b = binary.AppendUvarint(b, id)
	var msg string
	if rpcErr != nil {
		msg = rpcErr.Error()
		if msg == "" {
			msg = "unknown error"
		}
	}
	b = appendString(b, msg)
	switch t {
	case msgAppendResp:
		r, _ := resp.(*raft.AppendEntriesResponse)
		if r == nil {
			r = &raft.AppendEntriesResponse{}
		}
		b = appendHeader(b, r.RPCHeader)
		b = binary.AppendUvarint(b, r.Term)
		b = binary.AppendUvarint(b, r.LastLog)
		b = append(b, flags(r.Success, r.NoRetryBackoff))
	case msgVoteResp:
		r, _ := resp.(*raft.RequestVoteResponse)
		if r == nil {
			r = &raft.RequestVoteResponse{}
		}
		b = appendHeader(b, r.RPCHeader)
		b = binary.AppendUvarint(b, r.Term)
		b = appendBytes(b, r.Peers)
		b = append(b, flags(r.Granted, false))
	case msgPreVoteResp:
		r, _ := resp.(*raft.RequestPreVoteResponse)
		if r == nil {
			r = &raft.RequestPreVoteResponse{}
		}
		b = appendHeader(b, r.RPCHeader)
		b = binary.AppendUvarint(b, r.Term)
		b = append(b, flags(r.Granted, false))
	case msgTimeoutNowResp:
		r, _ := resp.(*raft.TimeoutNowResponse)
		if r == nil {
			r = &raft.TimeoutNowResponse{}
		}
		b = appendHeader(b, r.RPCHeader)
	case msgSnapshotResp:
		r, _ := resp.(*raft.InstallSnapshotResponse)
		if r == nil {
			r = &raft.InstallSnapshotResponse{}
		}
		b = appendHeader(b, r.RPCHeader)
		b = binary.AppendUvarint(b, r.Term)
		b = append(b, flags(r.Success, false))
	default:
		return b, fmt.Errorf("transport: no response for message type %d", reqType)
	}
	return b, nil
}

func appendHeader(b []byte, h raft.RPCHeader) []byte {
	b = binary.AppendUvarint(b, uint64(h.ProtocolVersion))
	b = appendBytes(b, h.ID)
	return appendBytes(b, h.Addr)
}

// appendLog encodes one entry. AppendedAt is a presence byte, then Unix
// nanoseconds as a varint; the zero time is just the byte.
func appendLog(b []byte, e *raft.Log) []byte {
	b = binary.AppendUvarint(b, e.Index)
	b = binary.AppendUvarint(b, e.Term)
	b = append(b, byte(e.Type))
	b = appendBytes(b, e.Data)
	b = appendBytes(b, e.Extensions)
	if e.AppendedAt.IsZero() {
		return append(b, 0)
	}
	b = append(b, 1)
	return binary.AppendVarint(b, e.AppendedAt.UnixNano())
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func flags(a, b bool) byte {
	var f byte
	if a {
		f |= 1
	}
	if b {
		f |= 2
	}
	return f
}

// decoder reads fields from a frame body. The first failure sticks and
// later reads return zero values, so a decode function checks err once at
// the end. Byte strings alias the body.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", errMalformed, what)
	}
	d.b = nil
}

func (d *decoder) byte() byte {
	if len(d.b) < 1 {
		d.fail("short")
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return v
}

// bytes returns a length-prefixed byte string; empty is nil, as raft's
// own msgpack decoding of an omitted field would give.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.b)) {
		d.fail("byte string past end")
		return nil
	}
	if n == 0 {
		return nil
	}
	// Full slice expression: appending to a decoded field must not
	// overwrite the rest of the frame.
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.bytes()) }

func (d *decoder) u32() uint32 {
	v := d.uvarint()
	if v > 1<<32-1 {
		d.fail("value exceeds 32 bits")
		return 0
	}
	return uint32(v)
}

func (d *decoder) flags(allowed byte) (bool, bool) {
	f := d.byte()
	if f&^allowed != 0 {
		d.fail("unknown flag bits")
	}
	return f&1 != 0, f&2 != 0
}

func (d *decoder) header() raft.RPCHeader {
	v := d.uvarint()
	if v > 1<<31 {
		d.fail("protocol version out of range")
	}
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersion(v), ID: d.bytes(), Addr: d.bytes()}
}

// done reports the decoding error, if any, or leftover bytes.
func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail(fmt.Sprintf("%d trailing bytes", len(d.b)))
	}
	return d.err
}

// request is a decoded request body.
type request struct {
	typ   byte
	id    uint64
	shard uint32
	cmd   any // *raft.AppendEntriesRequest, *raft.RequestVoteRequest, ...
}

// decodeRequest decodes a request body. It allocates in proportion to the
// body only: every count is checked against the bytes left.
func decodeRequest(body []byte) (request, error) {
	d := decoder{b: body}
	var q request
	q.typ = d.byte()
	q.id = d.uvarint()
	q.shard = d.u32()
	if d.err != nil {
		return q, d.err
	}
	switch q.typ {
	case msgAppendReq, msgHeartbeatReq:
		a := &raft.AppendEntriesRequest{RPCHeader: d.header(), Term: d.uvarint(), Leader: d.bytes()}
		if q.typ == msgAppendReq {
			a.PrevLogEntry = d.uvarint()
			a.PrevLogTerm = d.uvarint()
			a.LeaderCommitIndex = d.uvarint()
			a.Entries = d.logs()
		} else if d.err == nil && !isHeartbeat(a) {
			// The sender's test failed on this; the receiver's must not pass.
			d.fail("heartbeat without term or leader")
		}
		q.cmd = a
	case msgVoteReq:
		v := &raft.RequestVoteRequest{RPCHeader: d.header(), Term: d.uvarint(), Candidate: d.bytes(),
			LastLogIndex: d.uvarint(), LastLogTerm: d.uvarint()}
		v.LeadershipTransfer, _ = d.flags(1)
		q.cmd = v
	case msgPreVoteReq:
		q.cmd = &raft.RequestPreVoteRequest{RPCHeader: d.header(), Term: d.uvarint(),
			LastLogIndex: d.uvarint(), LastLogTerm: d.uvarint()}
	case msgTimeoutNowReq:
		q.cmd = &raft.TimeoutNowRequest{RPCHeader: d.header()}
	case msgSnapshotReq:
		s := &raft.InstallSnapshotRequest{RPCHeader: d.header()}
		v := d.uvarint()
		if v > 1<<31 {
			d.fail("snapshot version out of range")
		}
		s.SnapshotVersion = raft.SnapshotVersion(v)
		s.Term = d.uvarint()
		s.Leader = d.bytes()
		s.LastLogIndex = d.uvarint()
		s.LastLogTerm = d.uvarint()
		s.Peers = d.bytes()
		s.Configuration = d.bytes()
		s.ConfigurationIndex = d.uvarint()
		size := d.uvarint()
		if size > 1<<62 {
			d.fail("snapshot size out of range")
		}
		s.Size = int64(size)
		q.cmd = s
	default:
		return q, fmt.Errorf("%w: request type %d", errMalformed, q.typ)
	}
	return q, d.done()
}

// logs decodes an entry count and the entries, in two allocations.
func (d *decoder) logs() []*raft.Log {
	n := d.uvarint()
	if n == 0 || d.err != nil {
		return nil
	}
	if n > maxEntriesPerFrame || n > uint64(len(d.b)/minEntrySize) {
		d.fail("entry count exceeds frame")
		return nil
	}
	slab := make([]raft.Log, n)
	out := make([]*raft.Log, n)
	for i := range slab {
		e := &slab[i]
		e.Index = d.uvarint()
		e.Term = d.uvarint()
		e.Type = raft.LogType(d.byte())
		e.Data = d.bytes()
		e.Extensions = d.bytes()
		switch d.byte() {
		case 0:
		case 1:
			e.AppendedAt = time.Unix(0, d.varint())
		default:
			d.fail("bad appended-at tag")
		}
		if d.err != nil {
			return nil
		}
		out[i] = e
	}
	return out
}

// responseHead is the part of a response body before its fields.
type responseHead struct {
	typ    byte
	id     uint64
	errMsg string
}

// decodeResponseHead decodes a response's type, id and error text and
// returns a decoder positioned at its fields.
func decodeResponseHead(body []byte) (responseHead, decoder, error) {
	d := decoder{b: body}
	h := responseHead{typ: d.byte(), id: d.uvarint(), errMsg: d.string()}
	if d.err == nil && (h.typ < msgAppendResp || h.typ > msgSnapshotResp || h.typ%2 != 0) {
		d.fail(fmt.Sprintf("response type %d", h.typ))
	}
	return h, d, d.err
}

// decodeResponseBody decodes the fields of a response of type t into
// resp, which must be the pointer type that answers t.
func decodeResponseBody(d *decoder, t byte, resp any) error {
	switch r := resp.(type) {
	case *raft.AppendEntriesResponse:
		if t != msgAppendResp {
			break
		}
		*r = raft.AppendEntriesResponse{RPCHeader: d.header(), Term: d.uvarint(), LastLog: d.uvarint()}
		r.Success, r.NoRetryBackoff = d.flags(3)
		return d.done()
	case *raft.RequestVoteResponse:
		if t != msgVoteResp {
			break
		}
		*r = raft.RequestVoteResponse{RPCHeader: d.header(), Term: d.uvarint(), Peers: d.bytes()}
		r.Granted, _ = d.flags(1)
		return d.done()
	case *raft.RequestPreVoteResponse:
		if t != msgPreVoteResp {
			break
		}
		*r = raft.RequestPreVoteResponse{RPCHeader: d.header(), Term: d.uvarint()}
		r.Granted, _ = d.flags(1)
		return d.done()
	case *raft.TimeoutNowResponse:
		if t != msgTimeoutNowResp {
			break
		}
		*r = raft.TimeoutNowResponse{RPCHeader: d.header()}
		return d.done()
	case *raft.InstallSnapshotResponse:
		if t != msgSnapshotResp {
			break
		}
		*r = raft.InstallSnapshotResponse{RPCHeader: d.header(), Term: d.uvarint()}
		r.Success, _ = d.flags(1)
		return d.done()
	}
	return fmt.Errorf("%w: response type %d does not answer %T", errMalformed, t, resp)
}

// newResponse returns a zero response of the type that answers type t.
func newResponse(t byte) any {
	switch t {
	case msgAppendResp:
		return &raft.AppendEntriesResponse{}
	case msgVoteResp:
		return &raft.RequestVoteResponse{}
	case msgPreVoteResp:
		return &raft.RequestPreVoteResponse{}
	case msgTimeoutNowResp:
		return &raft.TimeoutNowResponse{}
	case msgSnapshotResp:
		return &raft.InstallSnapshotResponse{}
	}
	return nil
}

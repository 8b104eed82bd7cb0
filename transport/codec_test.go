package transport

//lint:file-ignore SA1019 raft still sets and falls back on Leader and Candidate, so they travel too

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func hdr(id string) raft.RPCHeader {
	return raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte(id), Addr: []byte("127.0.0.1:7071")}
}

// sampleRequests has one request of every type, with every field set.
func sampleRequests() []any {
	return []any{
		&raft.AppendEntriesRequest{
			RPCHeader: hdr("n1"), Term: 7, Leader: []byte("127.0.0.1:7071"),
			PrevLogEntry: 1 << 40, PrevLogTerm: 6, LeaderCommitIndex: 1<<40 - 3,
			Entries: []*raft.Log{
				{Index: 1<<40 + 1, Term: 7, Type: raft.LogCommand, Data: []byte("incr x"), AppendedAt: time.Unix(0, 1764650000123456789)},
				{Index: 1<<40 + 2, Term: 7, Type: raft.LogConfiguration, Data: bytes.Repeat([]byte{0xff}, 300), Extensions: []byte{1, 2}},
				{Index: 1<<40 + 3, Term: 7, Type: raft.LogNoop},
			},
		},
		&raft.AppendEntriesRequest{RPCHeader: hdr("n1"), Term: 9, Leader: []byte("127.0.0.1:7071")}, // a heartbeat
		&raft.RequestVoteRequest{RPCHeader: hdr("n2"), Term: 8, Candidate: []byte("c"), LastLogIndex: 99, LastLogTerm: 7, LeadershipTransfer: true},
		&raft.RequestPreVoteRequest{RPCHeader: hdr("n2"), Term: 8, LastLogIndex: 99, LastLogTerm: 7},
		&raft.TimeoutNowRequest{RPCHeader: hdr("n3")},
		&raft.InstallSnapshotRequest{RPCHeader: hdr("n1"), SnapshotVersion: 1, Term: 7, Leader: []byte("l"),
			LastLogIndex: 500, LastLogTerm: 6, Peers: []byte("p"), Configuration: []byte("conf"), ConfigurationIndex: 400, Size: 1 << 33},
	}
}

func sampleResponses() []any {
	return []any{
		&raft.AppendEntriesResponse{RPCHeader: hdr("f"), Term: 7, LastLog: 1 << 41, Success: true, NoRetryBackoff: true},
		&raft.AppendEntriesResponse{RPCHeader: hdr("f"), Term: 9, LastLog: 3},
		&raft.RequestVoteResponse{RPCHeader: hdr("f"), Term: 8, Peers: []byte("x"), Granted: true},
		&raft.RequestPreVoteResponse{RPCHeader: hdr("f"), Term: 8, Granted: true},
		&raft.TimeoutNowResponse{RPCHeader: hdr("f")},
		&raft.InstallSnapshotResponse{RPCHeader: hdr("f"), Term: 7, Success: true},
	}
}

// frameOf encodes one body with enc and returns the whole frame.
func frameOf(t testing.TB, enc func([]byte) ([]byte, error)) []byte {
	t.Helper()
	b, off := beginFrame(nil)
	b, err := enc(b)
	if err != nil {
		t.Fatal(err)
	}
	b, err = endFrame(b, off, defaultMaxFrame)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readOne(t testing.TB, frame []byte) []byte {
	t.Helper()
	body, err := readFrame(bufio.NewReader(bytes.NewReader(frame)), defaultMaxFrame)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func TestCodecRequestRoundTrip(t *testing.T) {
	for i, cmd := range sampleRequests() {
		frame := frameOf(t, func(b []byte) ([]byte, error) { return appendRequest(b, uint64(i)+1<<50, 3_000_000_000, cmd) })
		q, err := decodeRequest(readOne(t, frame))
		if err != nil {
			t.Fatalf("%T: %v", cmd, err)
		}
		if q.id != uint64(i)+1<<50 || q.shard != 3_000_000_000 {
			t.Fatalf("%T: id %d shard %d", cmd, q.id, q.shard)
		}
		if !reflect.DeepEqual(q.cmd, cmd) {
			t.Fatalf("%T round trip:\n got %+v\nwant %+v", cmd, q.cmd, cmd)
		}
	}
}

func TestCodecHeartbeatIsCompact(t *testing.T) {
	hb := sampleRequests()[1].(*raft.AppendEntriesRequest)
	if !isHeartbeat(hb) {
		t.Fatal("sample heartbeat not recognised")
	}
	q, err := decodeRequest(readOne(t, frameOf(t, func(b []byte) ([]byte, error) { return appendRequest(b, 1, 0, hb) })))
	if err != nil || q.typ != msgHeartbeatReq {
		t.Fatalf("type %d err %v, want heartbeat", q.typ, err)
	}
	if !isHeartbeat(q.cmd.(*raft.AppendEntriesRequest)) {
		t.Fatal("decoded heartbeat is not a heartbeat to the receiver")
	}
	// An append with a commit index is not a heartbeat, even without entries.
	ae := *hb
	ae.LeaderCommitIndex = 5
	if typ, _ := requestType(&ae); typ != msgAppendReq {
		t.Fatalf("append with commit index sent as type %d", typ)
	}
}

func TestCodecResponseRoundTrip(t *testing.T) {
	reqTypes := map[reflect.Type]byte{
		reflect.TypeFor[*raft.AppendEntriesResponse]():   msgAppendReq,
		reflect.TypeFor[*raft.RequestVoteResponse]():     msgVoteReq,
		reflect.TypeFor[*raft.RequestPreVoteResponse]():  msgPreVoteReq,
		reflect.TypeFor[*raft.TimeoutNowResponse]():      msgTimeoutNowReq,
		reflect.TypeFor[*raft.InstallSnapshotResponse](): msgSnapshotReq,
	}
	for _, resp := range sampleResponses() {
		for _, rpcErr := range []error{nil, errors.New("boom")} {
			rt := reqTypes[reflect.TypeOf(resp)]
			frame := frameOf(t, func(b []byte) ([]byte, error) { return appendResponse(b, rt, 42, resp, rpcErr) })
			h, d, err := decodeResponseHead(readOne(t, frame))
			if err != nil || h.id != 42 || h.typ != responseType(rt) {
				t.Fatalf("%T: head %+v err %v", resp, h, err)
			}
			if (rpcErr == nil) != (h.errMsg == "") || rpcErr != nil && h.errMsg != rpcErr.Error() {
				t.Fatalf("%T: error text %q, want %v", resp, h.errMsg, rpcErr)
			}
			got := newResponse(h.typ)
			if err := decodeResponseBody(&d, h.typ, got); err != nil {
				t.Fatalf("%T: %v", resp, err)
			}
			if !reflect.DeepEqual(got, resp) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, resp)
			}
		}
	}
}

func TestCodecResponseTypeMismatch(t *testing.T) {
	frame := frameOf(t, func(b []byte) ([]byte, error) {
		return appendResponse(b, msgVoteReq, 1, sampleResponses()[2], nil)
	})
	h, d, err := decodeResponseHead(readOne(t, frame))
	if err != nil {
		t.Fatal(err)
	}
	if err := decodeResponseBody(&d, h.typ, &raft.AppendEntriesResponse{}); !errors.Is(err, errMalformed) {
		t.Fatalf("vote response decoded as append response: err %v", err)
	}
}

// TestCodecRejectsMalformed cuts and corrupts valid bodies: every
// truncation and a set of bad values must be refused with errMalformed.
func TestCodecRejectsMalformed(t *testing.T) {
	for _, cmd := range sampleRequests() {
		body := readOne(t, frameOf(t, func(b []byte) ([]byte, error) { return appendRequest(b, 1, 1, cmd) }))
		for n := range len(body) {
			if _, err := decodeRequest(body[:n]); !errors.Is(err, errMalformed) {
				t.Fatalf("%T cut to %d of %d bytes: err %v", cmd, n, len(body), err)
			}
		}
		if _, err := decodeRequest(append(body[:len(body):len(body)], 0)); !errors.Is(err, errMalformed) {
			t.Fatalf("%T with a trailing byte: err %v", cmd, err)
		}
	}
	bad := map[string][]byte{
		"unknown type":         {99, 1, 1},
		"shard over 32 bits":   append([]byte{msgTimeoutNowReq, 1}, 0x80, 0x80, 0x80, 0x80, 0x10),
		"overlong uvarint":     {msgTimeoutNowReq, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"string past end":      {msgTimeoutNowReq, 1, 1, 1, 200, 'a'},
		"huge entry count":     {msgAppendReq, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"bad flag bits":        {msgVoteReq, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0x04},
		"bad appended-at byte": {msgAppendReq, 1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 7},
	}
	for name, body := range bad {
		if _, err := decodeRequest(body); !errors.Is(err, errMalformed) {
			t.Errorf("%s: err %v, want errMalformed", name, err)
		}
	}
	for name, body := range map[string][]byte{
		"request type as response": {msgAppendReq, 1, 0},
		"unknown response type":    {200, 1, 0},
		"error text past end":      {msgAppendResp, 1, 9, 'x'},
	} {
		if _, _, err := decodeResponseHead(body); !errors.Is(err, errMalformed) {
			t.Errorf("%s: err %v, want errMalformed", name, err)
		}
	}
}

func TestFrameLimits(t *testing.T) {
	if _, err := readFrame(bufio.NewReader(bytes.NewReader([]byte{0, 0, 0, 0})), 100); !errors.Is(err, errFrameSize) {
		t.Fatalf("empty frame: %v", err)
	}
	if _, err := readFrame(bufio.NewReader(bytes.NewReader([]byte{0, 0, 0, 101})), 100); !errors.Is(err, errFrameSize) {
		t.Fatalf("frame over limit: %v", err)
	}
	// A frame that announces 1 GiB and stops after a few bytes must fail
	// without allocating what it announced.
	lying := append([]byte{0x40, 0, 0, 0}, make([]byte, 1000)...)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := readFrame(bufio.NewReader(bytes.NewReader(lying)), 2<<30)
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated frame: %v", err)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 4*frameGrowStep {
		t.Fatalf("reading a lying 1 GiB frame allocated %d bytes", grew)
	}
	// A large frame that does arrive is read whole.
	big := bytes.Repeat([]byte("x"), 3*frameGrowStep+17)
	frame, _ := endFrame(append(append([]byte{}, 0, 0, 0, 0), big...), 0, len(big))
	got, err := readFrame(bufio.NewReader(bytes.NewReader(frame)), len(big))
	if err != nil || !bytes.Equal(got, big) {
		t.Fatalf("large frame: %d bytes, err %v", len(got), err)
	}
	// endFrame refuses a body over the limit and leaves the buffer as it was.
	b, off := beginFrame([]byte("keep"))
	b = append(b, strings.Repeat("y", 11)...)
	if b, err := endFrame(b, off, 10); !errors.Is(err, errFrameSize) || string(b) != "keep" {
		t.Fatalf("oversized body: %q, %v", b, err)
	}
}

package forward

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"testing"
	"time"

	"tally/fsm"
)

// frameOf encodes reqs as one request frame's payload, as the client sends it.
func frameOf(reqs ...request) []byte {
	var e enc
	startFrame(&e, frameRequests, len(reqs))
	for i, r := range reqs {
		encodeRequest(&e, uint64(i+1), &call{req: r, budget: time.Second})
	}
	return finishFrame(&e)[4:]
}

// FuzzDecodeRequests: whatever a peer sends, the server's decoder neither
// panics nor accepts a frame it would read differently when sent again.
func FuzzDecodeRequests(f *testing.F) {
	f.Add(frameOf(&WriteRequest{Shard: 2, Ops: []fsm.Op{{Kind: fsm.OpAdd, Name: "c", Delta: 3}}}))
	f.Add(frameOf(&ReadRequest{Shard: 1, Names: []string{"a", "b"}, Linearizable: true}, &MemberRequest{Name: "c", Actor: "u"}))
	f.Add(frameOf(&SplitRequest{Name: "c", Factor: 4}, &CardRequest{Name: "c"}, &ReplicaRequest{ID: "n2"}))
	f.Add(frameOf(&ConfigRequest{Shard: 3}, &HostRequest{Shard: 1, Open: true, Node: "n4"}))
	f.Add(frameOf(&ReadAtRequest{Shard: 2, Names: []string{"w"}, Linearizable: true}))
	f.Add(frameOf(&ChangesRequest{Shard: 2, After: 99, Max: 4096}, &DumpRequest{Shard: 5}))
	f.Add([]byte{frameRequests, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		in, err := decodeRequests(b)
		if err != nil {
			return
		}
		reqs := make([]request, len(in))
		for i, r := range in {
			if r.budget < 0 || r.budget > maxBudget {
				t.Fatalf("budget %v out of range", r.budget)
			}
			reqs[i] = r.req
		}
		again, err := decodeRequests(frameOf(reqs...))
		if err != nil {
			t.Fatalf("re-encoded frame does not decode: %v", err)
		}
		for i := range in {
			if !reflect.DeepEqual(again[i].req, in[i].req) {
				t.Fatalf("request %d decodes differently when sent again:\n got %#v\nwant %#v", i, again[i].req, in[i].req)
			}
		}
	})
}

// TestFrameLengthAloneAllocatesLittle: a peer that announces a 64 MiB
// frame and sends a few bytes gets an error, not a 64 MiB buffer.
func TestFrameLengthAloneAllocatesLittle(t *testing.T) {
	var hdr [4]byte
	binary.BigEndian.PutUint32(hdr[:], maxFrame)
	buf, err := readFrame(bytes.NewReader(append(hdr[:], "just a few bytes"...)), nil)
	if err == nil {
		t.Fatal("a short frame read whole")
	}
	if cap(buf) > 1<<20 {
		t.Fatalf("allocated %d bytes for a frame that sent 16", cap(buf))
	}
	// And a whole frame still reads.
	payload := bytes.Repeat([]byte{7}, 300<<10)
	binary.BigEndian.PutUint32(hdr[:], uint32(len(payload)))
	buf, err = readFrame(bytes.NewReader(append(hdr[:], payload...)), nil)
	if err != nil || !bytes.Equal(buf, payload) {
		t.Fatalf("a whole frame: %d bytes, %v", len(buf), err)
	}
}

package transport

import (
	"bufio"
	"bytes"
	"reflect"
	"testing"
)

// FuzzFrameDecoder feeds arbitrary bytes to the frame reader and the
// request and response decoders. Nothing may panic, and whatever decodes
// must encode back to something that decodes to the same message.
func FuzzFrameDecoder(f *testing.F) {
	for _, cmd := range sampleRequests() {
		f.Add(frameOf(f, func(b []byte) ([]byte, error) { return appendRequest(b, 9, 2, cmd) }))
	}
	for i, resp := range sampleResponses() {
		rt := []byte{msgAppendReq, msgAppendReq, msgVoteReq, msgPreVoteReq, msgTimeoutNowReq, msgSnapshotReq}[i]
		f.Add(frameOf(f, func(b []byte) ([]byte, error) { return appendResponse(b, rt, 9, resp, nil) }))
	}
	f.Add([]byte{0, 0, 0, 3, msgTimeoutNowReq, 1, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		for {
			body, err := readFrame(br, 1<<20)
			if err != nil {
				return
			}
			if q, err := decodeRequest(body); err == nil {
				again := frameOf(t, func(b []byte) ([]byte, error) { return appendRequest(b, q.id, q.shard, q.cmd) })
				q2, err := decodeRequest(readOne(t, again))
				if err != nil || !reflect.DeepEqual(q2, q) {
					t.Fatalf("request re-encoding: %+v vs %+v, err %v", q2, q, err)
				}
			}
			if h, d, err := decodeResponseHead(body); err == nil {
				resp := newResponse(h.typ)
				if decodeResponseBody(&d, h.typ, resp) == nil {
					reqType := h.typ - 1
					again := frameOf(t, func(b []byte) ([]byte, error) { return appendResponse(b, reqType, h.id, resp, errText(h.errMsg)) })
					h2, d2, err := decodeResponseHead(readOne(t, again))
					resp2 := newResponse(h2.typ)
					if err != nil || h2 != h || decodeResponseBody(&d2, h2.typ, resp2) != nil || !reflect.DeepEqual(resp2, resp) {
						t.Fatalf("response re-encoding: %+v %+v vs %+v %+v", h2, resp2, h, resp)
					}
				}
			}
		}
	})
}

type textError string

func (e textError) Error() string { return string(e) }

func errText(s string) error {
	if s == "" {
		return nil
	}
	return textError(s)
}

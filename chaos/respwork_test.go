package chaos

import (
	"errors"
	"io"
	"testing"

	"tally/internal/respclient"
)

// The RESP clients' outcome mapping: what each answer lets the checker
// assume about the write (or read) that got it.
func TestRESPOutcomes(t *testing.T) {
	sent := &respclient.ConnError{Sent: true, Err: io.EOF}
	notSent := &respclient.ConnError{Err: errors.New("connection refused")}
	adds := []struct {
		name  string
		reply respclient.Reply
		err   error
		want  respOutcome
		value int64
	}{
		{"integer", respclient.Reply{Kind: respclient.Integer, Int: 7}, nil, respOK, 7},
		{"tryagain", respclient.Reply{}, respclient.ServerError("TRYAGAIN the counter's shard has no leader right now; nothing was applied"), respFailed, 0},
		{"unknown", respclient.Reply{}, respclient.ServerError("UNKNOWN the write may or may not have committed; retry with the same IDEMPOTENCY id to learn its outcome"), respUnknown, 0},
		{"connection lost after sending", respclient.Reply{}, sent, respUnknown, 0},
		{"connection failed before sending", respclient.Reply{}, notSent, respFailed, 0},
		{"other error", respclient.Reply{}, respclient.ServerError("ERR internal"), respBug, 0},
		{"keyreused", respclient.Reply{}, respclient.ServerError("KEYREUSED this idempotency key was already used for a different operation"), respBug, 0},
		{"not an integer", respclient.Reply{Kind: respclient.Bulk, Str: "7"}, nil, respBug, 0},
	}
	for _, tc := range adds {
		v, got, bug := classifyAdd(tc.reply, tc.err)
		if got != tc.want || v != tc.value || (got == respBug) != (bug != "") {
			t.Errorf("add %s: %d, %v, %q; want %d, %v", tc.name, v, got, bug, tc.value, tc.want)
		}
	}
	reads := []struct {
		name  string
		reply respclient.Reply
		err   error
		want  respOutcome
		value int64
	}{
		{"bulk integer", respclient.Reply{Kind: respclient.Bulk, Str: "-3"}, nil, respOK, -3},
		{"tryagain", respclient.Reply{}, respclient.ServerError("TRYAGAIN no leader"), respFailed, 0},
		{"connection lost", respclient.Reply{}, sent, respFailed, 0},
		{"nil", respclient.Reply{Kind: respclient.Bulk, Nil: true}, nil, respBug, 0},
		{"not a number", respclient.Reply{Kind: respclient.Bulk, Str: "x"}, nil, respBug, 0},
		{"integer reply", respclient.Reply{Kind: respclient.Integer, Int: 3}, nil, respBug, 0},
		{"other error", respclient.Reply{}, respclient.ServerError("ERR boom"), respBug, 0},
	}
	for _, tc := range reads {
		v, got, bug := classifyRead(tc.reply, tc.err)
		if got != tc.want || v != tc.value || (got == respBug) != (bug != "") {
			t.Errorf("read %s: %d, %v, %q; want %d, %v", tc.name, v, got, bug, tc.value, tc.want)
		}
	}
	if got := incrArgs(Op{Counter: "c", Delta: -2, Key: "k1"}); len(got) != 5 || got[0] != "TALLY.INCRBY" || got[2] != "-2" || got[3] != "IDEMPOTENCY" || got[4] != "k1" {
		t.Errorf("incrArgs = %q", got)
	}
}

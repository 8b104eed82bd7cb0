package resp

import (
	"errors"
	"strconv"
	"strings"

	"tally/node"
)

// asNodeError keeps a core error as it is and wraps anything else.
func asNodeError(err error) *node.Error {
	var e *node.Error
	if errors.As(err, &e) {
		return e
	}
	return &node.Error{Code: node.CodeInternal, Message: err.Error()}
}

// Redis's own error texts, for what Redis also refuses.
const (
	errNotInteger = "ERR value is not an integer or out of range"
	errOverflow   = "ERR increment or decrement would overflow"
	errSyntax     = "ERR syntax error"
)

var (
	errNotIntegerErr = errors.New(errNotInteger)
	errSyntaxErr     = errors.New(errSyntax)
)

// errorText is an error's RESP form: Redis's words where Redis has them,
// otherwise a code of tally's own in upper case first (clients switch on
// the first word) and the value, where there is one, right after it.
func errorText(err error) string {
	var e *node.Error
	if !errors.As(err, &e) {
		msg := err.Error()
		if strings.HasPrefix(msg, "ERR ") || strings.HasPrefix(msg, "WRONGTYPE ") || strings.HasPrefix(msg, "MOVED ") {
			return msg
		}
		return "ERR " + msg
	}
	switch e.Code {
	case node.CodeOverflow:
		if e.Message == errDecrementOverflow.Message {
			return "ERR decrement would overflow"
		}
		return errOverflow
	case node.CodeOutOfBounds:
		return "OUTOFBOUNDS " + strconv.FormatInt(e.Value, 10) + " the result would leave the bounds; nothing changed"
	case node.CodeKeyReused:
		return "KEYREUSED " + e.Message
	case node.CodeCounterSplit, node.CodeNotSplittable, node.CodeSplitShrink:
		return strings.ToUpper(strings.ReplaceAll(string(e.Code), "_", "")) + " " + e.Message
	case node.CodeNoLeader, node.CodeUnavailable:
		// Not applied; clients and the Redis Cluster protocol retry
		// TRYAGAIN after a short wait.
		return "TRYAGAIN " + e.Message
	case node.CodeKeysFull:
		// Redis's word for a write refused for want of memory.
		return "OOM " + e.Message
	case node.CodeOutcomeUnknown:
		return "UNKNOWN the write may or may not have committed; retry with the same IDEMPOTENCY id to learn its outcome"
	}
	return "ERR " + e.Message
}

// movedError carries a -MOVED reply through the increments' error path.
type movedError string

func (m movedError) Error() string { return string(m) }

func unknownCommand(args [][]byte) string {
	var b strings.Builder
	b.WriteString("ERR unknown command '")
	b.WriteString(clip(args[0]))
	b.WriteString("', with args beginning with: ")
	for _, a := range args[1:min(len(args), 6)] {
		b.WriteString("'")
		b.WriteString(clip(a))
		b.WriteString("' ")
	}
	return b.String()
}

// clip keeps an echoed argument short and on one line.
func clip(b []byte) string {
	if len(b) > 128 {
		b = b[:128]
	}
	return strings.Map(func(r rune) rune {
		if r < ' ' {
			return ' '
		}
		return r
	}, string(b))
}

func wrongArity(name string) string {
	return "ERR wrong number of arguments for '" + strings.ToLower(name) + "' command"
}

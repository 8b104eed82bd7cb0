package resp

import (
	"bytes"
	"context"
	"strconv"
	"strings"

	"tally/auth"
	"tally/node"
)

// spec describes a command: its arity and key positions the way Redis's
// COMMAND reports them (clients such as go-redis's cluster client read
// them to find a command's key), and how to run it.
type spec struct {
	name              string // lower case
	arity             int    // n: exactly n arguments with the name; -n: at least n
	flags             []string
	first, last, step int // key positions; 0 0 0 for none

	// add parses an increment; increments of one pipeline run together.
	add func(args [][]byte) (node.AddRequest, error)
	// run answers any other command.
	run func(ctx context.Context, c *conn, args [][]byte)

	role auth.Role // what a token must grant to run it (roleFor)
}

var commands = map[string]*spec{}

func register(s *spec) {
	s.role = roleFor(s)
	commands[s.name] = s
}

// lookup finds a command by name, in any case.
func lookup(name []byte) *spec {
	var tmp [32]byte
	if len(name) > len(tmp) {
		return nil
	}
	return commands[string(bytes.ToLower(append(tmp[:0], name...)))]
}

func arityOK(s *spec, n int) bool {
	if s.arity >= 0 {
		return n == s.arity
	}
	return n >= -s.arity
}

// parseInt parses a decimal int64 the way Redis does: no spaces, no plus
// sign, no leading zeros beyond "0".
func parseInt(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 20 || b[0] == '+' || (len(b) > 1 && b[0] == '0') || (len(b) > 2 && b[0] == '-' && b[1] == '0') {
		return 0, false
	}
	v, err := strconv.ParseInt(string(b), 10, 64)
	return v, err == nil
}

func upper(b []byte) string { return strings.ToUpper(string(b)) }

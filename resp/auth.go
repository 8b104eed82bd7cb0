package resp

import (
	"slices"

	"tally/auth"
)

// Redis's own words for the three ways a command meets access control.
const (
	errNoAuth    = "NOAUTH Authentication required."
	errWrongPass = "WRONGPASS invalid username-password pair or user is disabled."
	errHelloAuth = "NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"
)

// roleFor is what a command needs: nothing for the handful that let a
// client authenticate or leave, write for anything flagged write, read
// for the rest (reads, and the connection and cluster commands).
func roleFor(s *spec) auth.Role {
	switch {
	case slices.Contains(s.flags, "no-auth"):
		return auth.None
	case slices.Contains(s.flags, "write"):
		return auth.Write
	}
	return auth.Read
}

// denied is the error for a command this connection may not run, "" when
// it may.
func (c *conn) denied(s *spec) string {
	switch {
	case c.role >= s.role:
		return ""
	case c.role == auth.None:
		return errNoAuth
	}
	return "NOPERM this token has no permissions to run the '" + s.name + "' command"
}

// authenticate takes token's role for the connection; a wrong token
// leaves the connection as it was, as in Redis.
func (c *conn) authenticate(token []byte) bool {
	r := c.s.cfg.Tokens.Role(string(token))
	if r == auth.None {
		return false
	}
	c.role = r
	return true
}

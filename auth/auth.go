// Package auth holds a node's access tokens and the role each one grants.
//
// The token file has one token per line, "TOKEN ROLE", with ROLE one of
// read, write or admin; blank lines and lines starting with # are
// ignored. A role includes those below it: write may read, admin may do
// anything. Lookups compare against every token in constant time, and
// nothing here ever puts a token into an error or a log line.
package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
)

// Role is what a token may do.
type Role int

const (
	None  Role = iota // no token, or an unknown one
	Read              // reads: counters, members, cluster state, metrics
	Write             // Read plus increments, likes, deletes, imports
	Admin             // Write plus splits, membership changes, faults, profiles
)

func (r Role) String() string {
	switch r {
	case Read:
		return "read"
	case Write:
		return "write"
	case Admin:
		return "admin"
	}
	return "none"
}

// ParseRole reads a role's name.
func ParseRole(s string) (Role, error) {
	switch s {
	case "read":
		return Read, nil
	case "write":
		return Write, nil
	case "admin":
		return Admin, nil
	}
	return None, fmt.Errorf("unknown role %q (want read, write or admin)", s)
}

// MinTokenLength keeps guessable tokens out of the file.
const MinTokenLength = 16

type entry struct {
	sum  [sha256.Size]byte
	role Role
}

// Tokens is a reloadable set of tokens. A nil *Tokens means
// authentication is off: Enabled is false.
type Tokens struct {
	path string
	cur  atomic.Pointer[[]entry]
}

// Load reads the token file at path.
func Load(path string) (*Tokens, error) {
	t := &Tokens{path: path}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Parse makes a fixed set of tokens from a file's contents (tests, and
// callers that keep tokens elsewhere); Reload on it keeps them.
func Parse(data []byte) (*Tokens, error) {
	es, err := parse(data)
	if err != nil {
		return nil, err
	}
	t := &Tokens{}
	t.cur.Store(&es)
	return t, nil
}

// Reload reads the file again. On error the tokens in force stay.
func (t *Tokens) Reload() error {
	if t.path == "" {
		return nil
	}
	data, err := os.ReadFile(t.path)
	if err != nil {
		return fmt.Errorf("auth token file: %w", err)
	}
	es, err := parse(data)
	if err != nil {
		return fmt.Errorf("auth token file %s: %w", t.path, err)
	}
	t.cur.Store(&es)
	return nil
}

func parse(data []byte) ([]entry, error) {
	var es []entry
	seen := map[[sha256.Size]byte]bool{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		// The line holds a token: say where it is wrong, never what it says.
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"TOKEN ROLE\" (%d fields)", line, len(fields))
		}
		if len(fields[0]) < MinTokenLength {
			return nil, fmt.Errorf("line %d: token shorter than %d characters", line, MinTokenLength)
		}
		role, err := ParseRole(fields[1])
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		sum := sha256.Sum256([]byte(fields[0]))
		if seen[sum] {
			return nil, fmt.Errorf("line %d: token repeated", line)
		}
		seen[sum] = true
		es = append(es, entry{sum: sum, role: role})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(es) == 0 {
		return nil, errors.New("no tokens: every request would be refused")
	}
	return es, nil
}

// Enabled says whether requests need a token.
func (t *Tokens) Enabled() bool { return t != nil }

// Role returns what token may do; None for an unknown one. It compares
// the token's digest with every entry, whatever matches, so the time it
// takes says nothing about how close a guess came.
func (t *Tokens) Role(token string) Role {
	if t == nil || token == "" {
		return None
	}
	sum := sha256.Sum256([]byte(token))
	role := None
	for _, e := range *t.cur.Load() {
		if subtle.ConstantTimeCompare(sum[:], e.sum[:]) == 1 {
			role = e.role
		}
	}
	return role
}

// Bearer wraps rt (nil: http.DefaultTransport) so that every request it
// sends carries "Authorization: Bearer token", for clients of a node that
// runs with tokens.
func Bearer(rt http.RoundTripper, token string) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return &bearer{rt: rt, header: "Bearer " + token}
}

type bearer struct {
	rt     http.RoundTripper
	header string
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context()) // a RoundTripper must not change the caller's request
	r.Header.Set("Authorization", b.header)
	return b.rt.RoundTrip(r)
}

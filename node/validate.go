package node

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"tally/fsm"
)

// Input rules every protocol shares. Each returns "" for valid input and
// otherwise why not, as a sentence an adapter can show as it is.

// ValidName checks DESIGN's rule for counter names: 1–256 bytes of
// printable UTF-8, no '/' (the '/' marks a sub-counter's stored name).
func ValidName(s string) string {
	switch {
	case len(s) == 0:
		return "counter name is empty"
	case len(s) > fsm.MaxNameLen:
		return "counter name is longer than 256 bytes"
	case !utf8.ValidString(s):
		return "counter name is not valid UTF-8"
	}
	for _, r := range s {
		if r == '/' {
			return "counter name contains '/'"
		}
		if !unicode.IsPrint(r) {
			return "counter name contains a control or non-printable character"
		}
	}
	return ""
}

// ValidActor checks an actor id: a counter name's rule, at most 128 bytes.
func ValidActor(s string) string {
	if len(s) > fsm.MaxActorLen {
		return "actor id is longer than 128 bytes"
	}
	if bad := ValidName(s); bad != "" {
		return strings.Replace(bad, "counter name", "actor id", 1)
	}
	return ""
}

// ValidKey reports whether k is a usable idempotency key: 1–256 printable
// ASCII characters.
func ValidKey(k string) bool {
	if len(k) == 0 || len(k) > fsm.MaxKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

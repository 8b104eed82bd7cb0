package fsm

import "fmt"

// checkDedup returns t's records, oldest first, panicking if t breaks an
// internal invariant: every live record found through the index at its own
// number, nothing else in the index, expiries exactly for the records
// flagged, and chunks covering [head, tail).
func checkDedup(t *dedupTable) []dedupState {
	var out []dedupState
	if t.first%chunkRecs != 0 || t.head < t.first || t.tail > t.first+uint64(len(t.chunks))*chunkRecs {
		panic(fmt.Sprintf("chunks [%d, +%d) do not cover [%d, %d)", t.first, len(t.chunks), t.head, t.tail))
	}
	if t.head-t.first >= chunkRecs && t.head != t.tail {
		panic(fmt.Sprintf("chunk starting at %d kept past head %d", t.first, t.head))
	}
	for seq := t.head; seq != t.tail; seq++ {
		r := *t.rec(seq)
		if got, ok := t.lookup(keyHash{lo: r.key, hi: r.key2}); !ok || got != seq {
			panic(fmt.Sprintf("record %d (key %x) found at %d, %v", seq, r.key, got, ok))
		}
		exp, has := t.expires[seq]
		if has != (r.flags&recExpires != 0) || (has && exp == 0) {
			panic(fmt.Sprintf("record %d flags %#x, expiry %d, %v", seq, r.flags, exp, has))
		}
		r.flags &^= recExpires
		out = append(out, dedupState{Rec: r, ExpiresAt: exp})
	}
	used := 0
	for _, v := range t.slots {
		if v != 0 {
			used++
		}
	}
	if used != t.len() || len(t.expires) > t.len() {
		panic(fmt.Sprintf("index holds %d, expiries %d, for %d records", used, len(t.expires), t.len()))
	}
	return out
}

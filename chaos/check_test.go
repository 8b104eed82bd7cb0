package chaos

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// goodHistory: two writers and a reader on "c", one write whose outcome
// stayed unknown, and a cold counter "d" with a decrement. Final reads
// come last.
func goodHistory() []Op {
	return []Op{
		{Client: 0, Counter: "c", Kind: Add, Delta: 1, Value: 1, Call: 0, Return: 10},
		{Client: 1, Counter: "c", Kind: Add, Delta: 2, Value: 3, Call: 5, Return: 20},
		{Client: 2, Counter: "c", Kind: Read, Value: 1, Call: 8, Return: 12},
		{Client: 0, Counter: "c", Kind: Read, Value: 3, Call: 25, Return: 30},
		{Client: 1, Counter: "c", Kind: Add, Delta: 5, Outcome: Unknown, Call: 26, Return: math.MaxInt64},
		{Client: 3, Counter: "d", Kind: Add, Delta: 4, Value: 4, Call: 0, Return: 5},
		{Client: 3, Counter: "d", Kind: Add, Delta: -1, Value: 3, Call: 6, Return: 9},
		{Client: 0, Counter: "c", Kind: Read, Value: 8, Call: 100, Return: 110},
		{Client: 0, Counter: "d", Kind: Read, Value: 3, Call: 100, Return: 110},
	}
}

func check(t *testing.T, ops []Op) Report {
	t.Helper()
	finals := map[string]int64{}
	for _, op := range ops {
		if op.Kind == Read && op.Call >= 100 {
			finals[op.Counter] = op.Value
		}
	}
	r, _ := Check(ops, finals, 0, 10*time.Second)
	return r
}

func TestCheckerAcceptsGoodHistories(t *testing.T) {
	if r := check(t, goodHistory()); !r.OK() || r.Linearizable != porcupine.Ok || r.Acked != 4 || r.Unknown != 1 || r.Reads != 4 {
		t.Fatalf("good history rejected: %+v", r)
	}
	// The unknown write may also not have happened.
	h := goodHistory()
	h[7].Value = 3
	if r := check(t, h); !r.OK() {
		t.Fatalf("unknown write left out rejected: %+v", r)
	}
	// ... or be settled by a keyed retry.
	h = goodHistory()
	h[4].Outcome, h[4].Value, h[4].Return, h[4].Resolved = OK, 8, 60, true
	if r := check(t, h); !r.OK() || r.Resolved != 1 || r.Unknown != 0 {
		t.Fatalf("resolved write rejected: %+v", r)
	}
}

// TestCheckerCatchesBugs feeds deliberately corrupted histories: each must
// be rejected, by the check that describes that bug.
func TestCheckerCatchesBugs(t *testing.T) {
	cases := []struct {
		name    string
		corrupt func([]Op) []Op
		want    func(Report) bool
	}{
		{"lost increment: final read misses an acknowledged add", func(h []Op) []Op {
			h[7].Value = 2 // acknowledged 1+2 (+5 unknown): 3 or 8; 2 lost one
			return h
		}, func(r Report) bool { return r.Lost == 1 && r.Linearizable == porcupine.Illegal }},
		{"lost increment: acknowledged, then never seen", func(h []Op) []Op {
			// The add of 2 was acknowledged but a later read and the final
			// value only show the first add.
			h[3].Value = 1
			h[7].Value = 1
			return h
		}, func(r Report) bool { return r.Lost == 2 && r.Linearizable == porcupine.Illegal && r.Backwards > 0 }},
		{"double count: a retry counted twice", func(h []Op) []Op {
			h[8].Value = 7 // d: +4 -1 = 3; a doubled +4 gives 7
			return h
		}, func(r Report) bool { return r.Duplicated == 4 && r.Linearizable == porcupine.Illegal }},
		{"double count: write answers a value counting itself twice", func(h []Op) []Op {
			h[1].Value = 5
			return h
		}, func(r Report) bool { return r.Linearizable == porcupine.Illegal }},
		{"stale read: read after an acknowledged add sees the old value", func(h []Op) []Op {
			h[3].Value = 1 // after add(2)→3 completed at 20, a read at 25 sees 1
			return h
		}, func(r Report) bool { return r.Linearizable == porcupine.Illegal && r.Backwards == 1 }},
		{"stale read: from before any write", func(h []Op) []Op {
			return append(h, Op{Client: 4, Counter: "c", Kind: Read, Value: 0, Call: 40, Return: 45})
		}, func(r Report) bool { return r.Linearizable == porcupine.Illegal && r.Backwards == 1 }},
		{"no final read", func(h []Op) []Op { return h[:8] }, func(r Report) bool { return len(r.Problems) == 1 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := check(t, tc.corrupt(goodHistory()))
			if r.OK() || !tc.want(r) {
				t.Fatalf("corrupted history not rejected as expected: %+v", r)
			}
			t.Logf("rejected: %s", strings.Join(r.Problems, "; "))
		})
	}
}

// TestVisualizeIllegal: a failing check can be drawn for a person to read.
func TestVisualizeIllegal(t *testing.T) {
	h := goodHistory()
	h[3].Value = 1
	_, info := Check(h, map[string]int64{"c": 8, "d": 3}, 0, 10*time.Second)
	path := filepath.Join(t.TempDir(), "history.html")
	if err := Visualize(info, path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(b), "read() → 1") {
		t.Fatalf("visualization lacks the bad read (err %v, %d bytes)", err, len(b))
	}
}

// TestCheckerSplitCounters: adds on a split counter answer a sub-counter's
// value (Inexact); the checker holds them to their effect only, and still
// catches a lost one and a read that went back.
func TestCheckerSplitCounters(t *testing.T) {
	split := func() []Op {
		return []Op{
			{Client: 0, Counter: "s", Kind: Add, Delta: 1, Value: 1, Inexact: true, Call: 0, Return: 10},
			{Client: 1, Counter: "s", Kind: Add, Delta: 1, Value: 1, Inexact: true, Call: 5, Return: 20}, // another sub-counter's 1
			{Client: 2, Counter: "s", Kind: Read, Value: 1, Call: 8, Return: 12},
			{Client: 2, Counter: "s", Kind: Read, Value: 2, Call: 25, Return: 30},
			{Client: 0, Counter: "s", Kind: Read, Value: 2, Call: 100, Return: 110},
		}
	}
	if r := check(t, split()); !r.OK() {
		t.Fatalf("good split history rejected: %+v", r)
	}
	lost := split()
	lost[3].Value, lost[4].Value = 1, 1
	if r := check(t, lost); r.OK() {
		t.Fatalf("lost increment on a split counter accepted: %+v", r)
	}
	back := split()
	back[2].Value, back[2].Call, back[2].Return = 2, 21, 22
	back[3].Value = 1
	if r := check(t, back); r.OK() {
		t.Fatalf("read going back on a split counter accepted: %+v", r)
	}
}

package chaos

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Report is the verdict on one history.
type Report struct {
	Counters int `json:"counters"`
	Adds     int `json:"adds"`     // recorded writes (acknowledged + unknown)
	Acked    int `json:"acked"`    // writes that ended OK (including resolved)
	Resolved int `json:"resolved"` // of Acked: first unknown, settled by a keyed retry
	Unknown  int `json:"unknown"`  // writes whose outcome stayed unknown
	Reads    int `json:"reads"`
	Failed   int `json:"failed"` // definitely not applied, left out of the history

	// Linearizable is porcupine's verdict: "Ok", "Illegal" or "Unknown"
	// (the check timed out: reported as a failure, never as a pass).
	Linearizable porcupine.CheckResult `json:"linearizable"`
	// Lost and Duplicated sum, over counters, how far the final value is
	// below the lowest or above the highest value the recorded writes
	// allow (acknowledged deltas plus any subset of unknown ones).
	Lost       int64 `json:"lost"`
	Duplicated int64 `json:"duplicated"`
	// Backwards counts reads that saw a lower value than an operation that
	// finished before they began, on counters that only go up.
	Backwards int `json:"backwards"`

	Problems []string `json:"problems,omitempty"`
}

// OK reports whether every check passed.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) problem(format string, a ...any) {
	r.Problems = append(r.Problems, fmt.Sprintf(format, a...))
}

// modelInput and modelOutput are what porcupine sees of an Op.
type modelInput struct {
	read  bool
	delta int64
}

type modelOutput struct {
	value   int64
	unknown bool
	inexact bool // an add on a split counter: value is a sub-counter's
}

// counterModel is one counter: state int64, starting at 0. An acknowledged
// add must return the value after it; an unknown add may return anything
// (its Return is infinite, so it may also never linearize before the end,
// which is the same as not having happened: porcupine lets an op with an
// infinite return take effect anywhere after its call, including never
// observably).
var counterModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		by := map[string][]porcupine.Operation{}
		var names []string
		for _, op := range history {
			name := op.Metadata.(string)
			if _, ok := by[name]; !ok {
				names = append(names, name)
			}
			by[name] = append(by[name], op)
		}
		sort.Strings(names)
		out := make([][]porcupine.Operation, 0, len(names))
		for _, n := range names {
			out = append(out, by[n])
		}
		return out
	},
	Init: func() any { return int64(0) },
	Step: func(state, input, output any) (bool, any) {
		s, in, out := state.(int64), input.(modelInput), output.(modelOutput)
		if in.read {
			return out.value == s, s
		}
		next := s + in.delta
		return out.unknown || out.inexact || out.value == next, next
	},
	Hash: func(state any) uint64 { return uint64(state.(int64)) },
	DescribeOperation: func(input, output any) string {
		in, out := input.(modelInput), output.(modelOutput)
		if in.read {
			return fmt.Sprintf("read() → %d", out.value)
		}
		if out.unknown {
			return fmt.Sprintf("add(%d) → ?", in.delta)
		}
		if out.inexact {
			return fmt.Sprintf("add(%d) → ok (split)", in.delta)
		}
		return fmt.Sprintf("add(%d) → %d", in.delta, out.value)
	},
	DescribeState:             func(state any) string { return fmt.Sprint(state.(int64)) },
	DescribeOperationMetadata: func(info any) string { return info.(string) },
}

func toPorcupine(ops []Op) []porcupine.Operation {
	out := make([]porcupine.Operation, 0, len(ops))
	for _, op := range ops {
		out = append(out, porcupine.Operation{
			ClientId: op.Client,
			Input:    modelInput{read: op.Kind == Read, delta: op.Delta},
			Call:     op.Call,
			Output:   modelOutput{value: op.Value, unknown: op.Outcome == Unknown, inexact: op.Inexact},
			Return:   op.Return,
			Metadata: op.Counter,
		})
	}
	return out
}

// Check runs every check on a history. finals holds each counter's value
// from a linearizable read made after the faults healed and the writers
// stopped (that read should be in ops too). failed is the count of ops
// left out. timeout bounds porcupine; a timeout is a failure.
func Check(ops []Op, finals map[string]int64, failed int, timeout time.Duration) (Report, porcupine.LinearizationInfo) {
	r := Report{Failed: failed}
	type bounds struct {
		acked, lo, hi int64
		unknown       int
		upOnly        bool
	}
	per := map[string]*bounds{}
	for _, op := range ops {
		b := per[op.Counter]
		if b == nil {
			b = &bounds{upOnly: true}
			per[op.Counter] = b
		}
		if op.Kind == Read {
			r.Reads++
			continue
		}
		r.Adds++
		if op.Delta < 0 {
			b.upOnly = false
		}
		switch {
		case op.Outcome == OK:
			r.Acked++
			if op.Resolved {
				r.Resolved++
			}
			b.acked += op.Delta
		case op.Delta < 0:
			r.Unknown++
			b.unknown++
			b.lo += op.Delta
		default:
			r.Unknown++
			b.unknown++
			b.hi += op.Delta
		}
	}
	r.Counters = len(per)
	names := slices.Sorted(maps.Keys(per))

	// (b) bounds: acked + (negative unknowns) <= final <= acked + (positive unknowns).
	for _, n := range names {
		b := per[n]
		final, ok := finals[n]
		if !ok {
			r.problem("%s: no final read", n)
			continue
		}
		lo, hi := b.acked+b.lo, b.acked+b.hi
		switch {
		case final < lo:
			r.Lost += lo - final
			r.problem("%s: final value %d is below %d (acknowledged sum %d, %d unknown): %d lost", n, final, lo, b.acked, b.unknown, lo-final)
		case final > hi:
			r.Duplicated += final - hi
			r.problem("%s: final value %d is above %d (acknowledged sum %d, %d unknown): %d counted twice", n, final, hi, b.acked, b.unknown, final-hi)
		}
	}

	// (d) monotonic reads on counters that only go up.
	for _, desc := range backwards(ops, per2up(per, func(b *bounds) bool { return b.upOnly })) {
		r.Backwards++
		if r.Backwards <= 10 {
			r.problem("read went backwards: %s", desc)
		}
	}

	// (a) linearizability, per counter.
	res, info := porcupine.CheckOperationsVerbose(counterModel, toPorcupine(ops), timeout)
	r.Linearizable = res
	switch res {
	case porcupine.Illegal:
		r.problem("history is not linearizable")
	case porcupine.Unknown:
		r.problem("linearizability check timed out after %v: not proven", timeout)
	}
	return r, info
}

// per2up lists the counters for which up reports true.
func per2up[B any](per map[string]B, up func(B) bool) map[string]bool {
	out := map[string]bool{}
	for n, b := range per {
		if up(b) {
			out[n] = true
		}
	}
	return out
}

// backwards finds, on the given counters, OK ops that observed a value
// lower than an OK op (read or write) that completed before they were
// invoked. For a counter that only goes up that is a read back in time.
func backwards(ops []Op, counters map[string]bool) []string {
	by := map[string][]Op{}
	for _, op := range ops {
		if op.Outcome == OK && counters[op.Counter] && !op.Inexact {
			by[op.Counter] = append(by[op.Counter], op)
		}
	}
	var out []string
	names := slices.Sorted(maps.Keys(by))
	for _, n := range names {
		list := by[n]
		byCall := append([]Op(nil), list...)
		sort.Slice(byCall, func(i, j int) bool { return byCall[i].Call < byCall[j].Call })
		byRet := list
		sort.Slice(byRet, func(i, j int) bool { return byRet[i].Return < byRet[j].Return })
		j := 0
		best := int64(math.MinInt64)
		var bestOp Op
		for _, op := range byCall {
			for j < len(byRet) && byRet[j].Return < op.Call {
				if byRet[j].Value > best {
					best, bestOp = byRet[j].Value, byRet[j]
				}
				j++
			}
			if op.Value < best {
				out = append(out, fmt.Sprintf("%s: %s saw %d after %s had seen %d", n, describe(op), op.Value, describe(bestOp), best))
			}
		}
	}
	return out
}

func describe(op Op) string {
	var b strings.Builder
	fmt.Fprintf(&b, "client %d ", op.Client)
	if op.Kind == Read {
		b.WriteString("read")
	} else {
		fmt.Fprintf(&b, "add(%d)", op.Delta)
	}
	fmt.Fprintf(&b, " [%.3fs, %.3fs]", float64(op.Call)/1e9, float64(op.Return)/1e9)
	return b.String()
}

// Visualize writes porcupine's HTML picture of the history.
func Visualize(info porcupine.LinearizationInfo, path string) error {
	return porcupine.VisualizePath(counterModel, info, path)
}

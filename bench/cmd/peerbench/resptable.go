package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"tally/placement"
)

// respRow is one row of the Redis-protocol table: one redis-benchmark
// run, or several at once (one per tally node), as scripts/bench.sh
// records it. Requests is what the processes sent; CounterDelta is how
// far the counters they increment rose over the run.
type respRow struct {
	System       string   `json:"system"`
	Workload     string   `json:"workload"`
	Clients      []int    `json:"clients"` // per redis-benchmark process
	Pipeline     int      `json:"pipeline"`
	Requests     int64    `json:"requests"`
	Seconds      float64  `json:"seconds"`
	OpsPerSec    float64  `json:"ops_per_sec"`
	P50Ms        float64  `json:"p50_ms"`
	P99Ms        float64  `json:"p99_ms"`
	CPUUsPerOp   *float64 `json:"cpu_us_per_op"`
	CounterDelta *int64   `json:"counter_delta"`
}

// respRatio compares a row with the baseline's row of the same workload.
type respRatio struct {
	Table     string   `json:"table"`
	System    string   `json:"system"`
	Baseline  string   `json:"baseline"`
	Workload  string   `json:"workload"`
	OpsPerSec float64  `json:"ops_per_sec_ratio"`          // row ÷ baseline
	CPUPerOp  *float64 `json:"cpu_per_op_ratio,omitempty"` // row ÷ baseline
}

// respTable prints the Redis-protocol table and, under it, every row's
// ops/s and server CPU per op divided by the baseline's; --ratios also
// appends those ratios to a file as JSON lines.
func respTable(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("resptable", flag.ContinueOnError)
	baseline := fs.String("baseline", "redis-always", "the system the ratios divide by")
	ratiosPath := fs.String("ratios", "", "append the ratios to this file, one JSON line each")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rows, err := readFiles(fs.Args(), readRespRows)
	if err != nil {
		return err
	}
	ratios := respRatios(rows, *baseline)
	if err := writeRespTable(w, rows, ratios, *baseline); err != nil {
		return err
	}
	if *ratiosPath == "" {
		return nil
	}
	f, err := os.OpenFile(*ratiosPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(f)
	for _, r := range ratios {
		if err := enc.Encode(r); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// readRespRows reads one JSON row per line, skipping lines that are not
// JSON objects.
func readRespRows(r io.Reader) ([]respRow, error) {
	var out []respRow
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var row respRow
		if err := json.Unmarshal([]byte(line), &row); err != nil {
			return nil, err
		}
		out = append(out, row)
	}
	return out, sc.Err()
}

func respRatios(rows []respRow, baseline string) []respRatio {
	base := map[string]respRow{}
	for _, r := range rows {
		if r.System == baseline {
			base[r.Workload] = r
		}
	}
	var out []respRatio
	for _, r := range rows {
		b, ok := base[r.Workload]
		if r.System == baseline || !ok || b.OpsPerSec <= 0 {
			continue
		}
		ra := respRatio{Table: "resp", System: r.System, Baseline: baseline, Workload: r.Workload, OpsPerSec: r.OpsPerSec / b.OpsPerSec}
		if r.CPUUsPerOp != nil && b.CPUUsPerOp != nil && *b.CPUUsPerOp > 0 {
			v := *r.CPUUsPerOp / *b.CPUUsPerOp
			ra.CPUPerOp = &v
		}
		out = append(out, ra)
	}
	return out
}

// counterCheck says whether the counters rose by exactly the requests
// sent, or by how many more (+) or fewer (-) they did.
func counterCheck(r respRow) string {
	if r.CounterDelta == nil {
		return "not read"
	}
	if d := *r.CounterDelta - r.Requests; d != 0 {
		return fmt.Sprintf("%+d", d)
	}
	return "exact"
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, n := range v {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, "+")
}

func writeRespTable(w io.Writer, rows []respRow, ratios []respRatio, baseline string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "system\tworkload\tclients\tINCRs\tsecs\tops/s\tp50 ms\tp99 ms\tserver CPU/op\tcounter\t\n")
	for _, r := range rows {
		cpu := "—"
		if r.CPUUsPerOp != nil {
			cpu = fmt.Sprintf("%.1f us", *r.CPUUsPerOp)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%.1f\t%.0f\t%.2f\t%.2f\t%s\t%s\t\n", r.System, r.Workload, joinInts(r.Clients),
			r.Requests, r.Seconds, r.OpsPerSec, r.P50Ms, r.P99Ms, cpu, counterCheck(r))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(ratios) == 0 {
		return nil
	}
	fmt.Fprintf(w, "\nratio = the row's figure ÷ %s's for the same workload\n", baseline)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "system\tworkload\tops/s ratio\tCPU/op ratio\t\n")
	for _, r := range ratios {
		cpu := "—"
		if r.CPUPerOp != nil {
			cpu = fmt.Sprintf("%.2f", *r.CPUPerOp)
		}
		fmt.Fprintf(tw, "%s\t%s\t%.3f\t%s\t\n", r.System, r.Workload, r.OpsPerSec, cpu)
	}
	return tw.Flush()
}

// tagChars are the characters of redis-benchmark's cluster hash tags:
// its table holds, for each slot, a shortest alphanumeric string that
// hashes to it.
const tagChars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// slotKeys lists every key redis-benchmark --cluster could make of
// pattern for the given slots. It puts one hash tag per node into the
// pattern's "{tag}": a string of one to three characters from its own
// table, written over "tag" and padded with '}' (so "{ab}}" for "ab").
// Which string its table holds for a slot is not known here, so every
// candidate that lands on one of the slots is listed; reading them all
// and adding up counts what it incremented.
func slotKeys(pattern string, slots []int) ([]string, error) {
	const hole = "{tag}"
	at := strings.Index(pattern, hole)
	if at < 0 {
		return nil, fmt.Errorf("pattern %q has no %s", pattern, hole)
	}
	want := map[int]bool{}
	for _, s := range slots {
		if s < 0 || s >= placement.NumSlots {
			return nil, fmt.Errorf("slot %d out of range 0-%d", s, placement.NumSlots-1)
		}
		want[s] = true
	}
	var out []string
	try := func(tag string) {
		key := pattern[:at] + "{" + tag + strings.Repeat("}", 4-len(tag)) + pattern[at+len(hole):]
		if want[placement.Slot(key)] {
			out = append(out, key)
		}
	}
	for _, a := range tagChars {
		try(string(a))
		for _, b := range tagChars {
			try(string([]rune{a, b}))
			for _, c := range tagChars {
				try(string([]rune{a, b, c}))
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

func slotKeysCmd(args []string, w io.Writer) error {
	fs := flag.NewFlagSet("slotkeys", flag.ContinueOnError)
	pattern := fs.String("pattern", "counter:{tag}:__rand_int__", "the key as redis-benchmark --cluster writes it, with {tag}")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var slots []int
	for _, a := range fs.Args() {
		s, err := strconv.Atoi(a)
		if err != nil {
			return fmt.Errorf("not a slot: %q", a)
		}
		slots = append(slots, s)
	}
	if len(slots) == 0 {
		return fmt.Errorf("need one or more slots")
	}
	keys, err := slotKeys(*pattern, slots)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(w)
	for _, k := range keys {
		fmt.Fprintln(bw, k)
	}
	return bw.Flush()
}

package loadgen

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// Set and String make a Dist a flag value.
func (d *Dist) Set(s string) error {
	v, err := ParseDist(s)
	if err == nil {
		*d = v
	}
	return err
}

func (d *Dist) String() string { return string(*d) }

// Bench is a run as the command line describes it: the workload, what to
// print, and whether to verify the counts afterwards. `tally bench` and
// the peer drivers share it, so every system gets the same flags, the
// same loop and the same report.
type Bench struct {
	Config
	System       string // names the system in reports ("tally", "redis", ...)
	Workload     string // names the workload in reports
	Route        string // how requests pick a node ("leader", "any"), for the report; "" says nothing
	JSON         bool   // print the report as one JSON line instead of text
	TimelineFile string // write an SVG of ops/s and p99 per second here
	MarksFile    string // "unix-ms label" lines to mark on the timeline
	Verify       bool   // read every counter before and after, check the increase
	// Nodes, when set, are scraped right before and right after the load
	// for the report's NodeCost.
	Nodes NodeScraper
}

// Flags defines the workload and output flags on fs. The caller keeps the
// ones it has already (tally's global --json is one).
func (b *Bench) Flags(fs *flag.FlagSet) {
	fs.IntVar(&b.Clients, "clients", 64, "concurrent keep-alive clients, spread over the addresses")
	fs.Int64Var(&b.Requests, "requests", 0, "stop after this many requests (default: run for --duration)")
	fs.DurationVar(&b.Duration, "duration", 10*time.Second, "how long to issue requests when --requests is not given")
	fs.StringVar(&b.Counter, "counter", "bench:hot", "counter name (a prefix when --counters > 1)")
	fs.IntVar(&b.Counters, "counters", 1, "how many counters the ops spread over")
	fs.Var(&b.Dist, "dist", "how ops pick a counter: hot (all on the first), uniform or zipf (default hot for one counter, else uniform)")
	fs.IntVar(&b.Batch, "batch", 1, "increments per request (more than 1 sends batches)")
	fs.Float64Var(&b.Reads, "reads", 0, "share of requests, 0–1, that read one counter instead of incrementing")
	fs.Int64Var(&b.Seed, "seed", 1, "seed of the counter choice (client i uses seed+i)")
	fs.StringVar(&b.TimelineFile, "timeline", "", "write an SVG `file` plotting ops/s and p99 latency per second")
	fs.StringVar(&b.MarksFile, "marks", "", "a `file` of \"unix-ms label\" lines (faults, say) to mark on the timeline")
	fs.StringVar(&b.System, "system", b.System, "a name for the system under load in the report")
	fs.StringVar(&b.Workload, "workload", "", "a name for this workload in the report")
	fs.BoolVar(&b.Verify, "verify", true, "read every counter before and after the run and check it rose by exactly the acknowledged increments")
}

// Report is a run's outcome, as printed by --json.
type Report struct {
	System         string           `json:"system,omitempty"`
	Workload       string           `json:"workload,omitempty"`
	Route          string           `json:"route,omitempty"`
	Clients        int              `json:"clients"`
	Counters       int              `json:"counters"`
	Dist           Dist             `json:"dist"`
	Batch          int              `json:"batch"`
	ReadShare      float64          `json:"read_share"`
	Requests       int64            `json:"requests"`
	Ops            int64            `json:"ops"`
	Incrs          int64            `json:"increments"`
	Reads          int64            `json:"reads"`
	Errors         int64            `json:"errors"`
	MaybeApplied   int64            `json:"maybe_applied,omitempty"`
	ByError        map[string]int64 `json:"errors_by_code,omitempty"`
	Seconds        float64          `json:"seconds"`
	OpsPerSec      float64          `json:"ops_per_sec"`
	RequestsPerSec float64          `json:"requests_per_sec"`
	P50Ms          float64          `json:"p50_ms"`
	P99Ms          float64          `json:"p99_ms"`
	P999Ms         float64          `json:"p999_ms"`
	MaxMs          float64          `json:"max_ms"`
	Verified       *bool            `json:"verified,omitempty"`
	Mismatches     []string         `json:"mismatches,omitempty"`
	NodeCost       *NodeCost        `json:"node_cost,omitempty"`
	Timeline       []Second         `json:"timeline,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// NewReport summarises res, a run of cfg.
func NewReport(system, workload string, cfg Config, res *Result) Report {
	return Report{System: system, Workload: workload, Clients: cfg.Clients, Counters: max(cfg.Counters, 1),
		Dist: cfg.Dist, Batch: max(cfg.Batch, 1), ReadShare: cfg.Reads,
		Requests: res.Requests, Ops: res.Ops(), Incrs: res.Incrs, Reads: res.Reads, Errors: res.Errors,
		MaybeApplied: res.MaybeApplied, ByError: res.ByError, Seconds: res.Elapsed.Seconds(),
		OpsPerSec: res.Throughput(), RequestsPerSec: res.RequestRate(),
		P50Ms: ms(res.Percentile(50)), P99Ms: ms(res.Percentile(99)), P999Ms: ms(res.Percentile(99.9)), MaxMs: ms(res.Max()),
		Timeline: res.Timeline}
}

// Summary is one line in the style of redis-benchmark.
func (r *Report) Summary() string {
	label := "incr"
	if r.Batch > 1 {
		label = fmt.Sprintf("incr ×%d per request", r.Batch)
	}
	if r.ReadShare > 0 {
		label += fmt.Sprintf(", %.0f%% reads", r.ReadShare*100)
	}
	if r.System != "" {
		label = r.System + " " + label
	}
	line := fmt.Sprintf("%s: %d ops in %.2fs, %.0f ops/s, %.0f requests/s, p50 %.2f ms, p99 %.2f ms, p99.9 %.2f ms, max %.2f ms, errors %d",
		label, r.Ops, r.Seconds, r.OpsPerSec, r.RequestsPerSec, r.P50Ms, r.P99Ms, r.P999Ms, r.MaxMs, r.Errors)
	if len(r.ByError) > 0 {
		codes := make([]string, 0, len(r.ByError))
		for code := range r.ByError {
			codes = append(codes, code)
		}
		sort.Strings(codes)
		for i, code := range codes {
			codes[i] = fmt.Sprintf("%s %d", code, r.ByError[code])
		}
		line += " (" + strings.Join(codes, ", ") + ")"
	}
	return line
}

// Check compares counter values before and after a run with what the run
// acknowledged: every counter must have risen by at least its
// acknowledged increments, and all together by at most that plus the
// failed increments that may have applied. It returns the violations.
func Check(names []string, before, after map[string]int64, res *Result) []string {
	var bad []string
	var extra int64
	for _, n := range names {
		got := after[n] - before[n]
		if got < res.Acked[n] {
			bad = append(bad, fmt.Sprintf("%s rose by %d but %d increments were acknowledged", n, got, res.Acked[n]))
		}
		extra += got - res.Acked[n]
	}
	if extra > res.MaybeApplied {
		bad = append(bad, fmt.Sprintf("counters rose by %d more than acknowledged, with only %d ambiguous increments", extra, res.MaybeApplied))
	}
	return bad
}

// ReadAll reads names through t in chunks of 1,000, retrying a failed
// chunk until ctx ends (a store may be briefly unavailable right after a
// heavy run).
func ReadAll(ctx context.Context, t Target, names []string) (map[string]int64, error) {
	out := make(map[string]int64, len(names))
	for i := 0; i < len(names); i += 1000 {
		chunk := names[i:min(i+1000, len(names))]
		for {
			vals, err := t.Read(ctx, chunk)
			if err == nil {
				for j, v := range vals {
					out[chunk[j]] = v
				}
				break
			}
			select {
			case <-ctx.Done():
				return nil, fmt.Errorf("reading counters: %w (last error: %v)", ctx.Err(), err)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return out, nil
}

// Execute runs the bench: reads the counters (when verifying), drives the
// load, reads them again, prints the summary or the JSON report to w,
// and writes the timeline. readAll is the verification's read, which must
// be linearizable. It fails when the verification does.
func (b *Bench) Execute(ctx context.Context, w io.Writer, newTarget func(int) Target,
	readAll func(ctx context.Context, names []string) (map[string]int64, error)) error {
	cfg := b.Config
	cfg.Timeline = cfg.Timeline || b.TimelineFile != ""
	if err := cfg.setDefaults(); err != nil {
		return err
	}
	names := cfg.Names()
	var before map[string]int64
	if b.Verify {
		var err error
		if before, err = readAll(ctx, names); err != nil {
			return err
		}
	}
	var nodesBefore []NodeSample
	if b.Nodes != nil {
		nodesBefore = b.Nodes.Scrape(ctx)
	}
	res, err := Run(ctx, cfg, newTarget)
	if err != nil {
		return err
	}
	rep := NewReport(b.System, b.Workload, cfg, res)
	rep.Route = b.Route
	if b.Nodes != nil {
		rep.NodeCost = NewNodeCost(nodesBefore, b.Nodes.Scrape(ctx), res.Requests, res.Ops(), res.Incrs)
	}
	if b.Verify {
		after, err := readAll(ctx, names)
		if err != nil {
			return err
		}
		rep.Mismatches = Check(names, before, after, res)
		ok := len(rep.Mismatches) == 0
		rep.Verified = &ok
	}
	if b.TimelineFile != "" {
		// The marks are read only now: a fault injector writes them while
		// the run goes on.
		var marks []Mark
		if b.MarksFile != "" {
			if marks, err = readMarksFile(b.MarksFile); err != nil {
				return err
			}
		}
		name := strings.TrimSpace(b.System + " " + b.Workload)
		title := fmt.Sprintf("%d clients, %d counter(s) (%s), %d increment(s) per request", cfg.Clients, cfg.Counters, cfg.Dist, cfg.Batch)
		if name != "" {
			title = name + ": " + title
		}
		if err := writeSVGFile(b.TimelineFile, title, res.Start, res.Timeline, marks); err != nil {
			return err
		}
	}
	if b.JSON {
		line, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "%s\n", line)
	} else {
		fmt.Fprintln(w, rep.Summary())
		codes := make([]string, 0, len(rep.ByError))
		for code := range rep.ByError {
			codes = append(codes, code)
		}
		sort.Strings(codes)
		for _, code := range codes {
			fmt.Fprintf(w, "  %d × %s\n", rep.ByError[code], code)
		}
		if rep.NodeCost != nil {
			rep.NodeCost.WriteText(w)
		}
		if rep.Verified != nil && *rep.Verified {
			if res.MaybeApplied == 0 {
				fmt.Fprintf(w, "verified: the counters rose by exactly the %d acknowledged increments\n", res.Incrs)
			} else {
				fmt.Fprintf(w, "verified: the counters rose by the %d acknowledged increments and at most the %d whose outcome is unknown\n", res.Incrs, res.MaybeApplied)
			}
		}
	}
	if rep.Verified != nil && !*rep.Verified {
		return fmt.Errorf("verification failed: %s", strings.Join(rep.Mismatches, "; "))
	}
	return nil
}

func readMarksFile(path string) ([]Mark, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadMarks(f)
}

func writeSVGFile(path, title string, start time.Time, secs []Second, marks []Mark) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := WriteSVG(f, title, start, secs, marks); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

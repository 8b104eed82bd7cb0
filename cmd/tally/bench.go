package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"tally/client"
	"tally/loadgen"
)

func init() {
	register(&command{
		name:    "bench",
		args:    "[--clients N] [--requests N | --duration D] [--counter NAME] [--counters N]",
		summary: "send increments from many keep-alive clients over every --addr; report ops/s and latency, then verify the counts",
		run:     runBench,
	})
}

func runBench(e *env, args []string) error {
	fs := e.flagSet()
	var cfg loadgen.Config
	fs.IntVar(&cfg.Clients, "clients", 64, "concurrent keep-alive clients, spread over the --addr nodes")
	fs.Int64Var(&cfg.Requests, "requests", 0, "stop after this many requests (default: run for --duration)")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "how long to run when --requests is not given")
	fs.StringVar(&cfg.Counter, "counter", "bench:hot", "counter name (a prefix when --counters > 1)")
	fs.IntVar(&cfg.Counters, "counters", 1, "spread increments uniformly over this many counters")
	verify := fs.Bool("verify", true, "read every counter linearizably before and after, and check the increase equals the acknowledged increments")
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("bench takes flags only")
	}
	cfg.Addrs = strings.Split(e.addr, ",")
	if cfg.Counters < 1 || cfg.Clients < 1 {
		return usagef("--clients and --counters must be at least 1")
	}
	names := make([]string, cfg.Counters)
	for i := range names {
		names[i] = cfg.CounterName(i)
	}
	c := e.client()
	before := map[string]int64{}
	if *verify {
		if before, err = readAll(c, names, e.timeout); err != nil {
			return err
		}
	}
	res, err := loadgen.Run(context.Background(), cfg)
	if err != nil {
		return err
	}
	out := struct {
		Requests   int64            `json:"requests"`
		Errors     int64            `json:"errors"`
		ByError    map[string]int64 `json:"errors_by_code,omitempty"`
		Seconds    float64          `json:"seconds"`
		OpsPerSec  float64          `json:"ops_per_sec"`
		P50Ms      float64          `json:"p50_ms"`
		P99Ms      float64          `json:"p99_ms"`
		P999Ms     float64          `json:"p999_ms"`
		Verified   bool             `json:"verified"`
		Mismatches []string         `json:"mismatches,omitempty"`
	}{Requests: res.Requests, Errors: res.Errors, ByError: res.ByError, Seconds: res.Elapsed.Seconds(),
		OpsPerSec: res.Throughput(), P50Ms: ms(res.Percentile(50)), P99Ms: ms(res.Percentile(99)), P999Ms: ms(res.Percentile(99.9))}
	if *verify {
		after, err := readAll(c, names, e.timeout)
		if err != nil {
			return err
		}
		// Only errors that might have applied (unknown outcome, lost
		// connection) allow the count to exceed what was acknowledged.
		var maybe int64
		for code, v := range res.ByError {
			if strings.Contains(code, "outcome_unknown") || strings.HasPrefix(code, "transport") {
				maybe += v
			}
		}
		var extra int64
		for _, n := range names {
			got := after[n] - before[n]
			if got < res.Acked[n] {
				out.Mismatches = append(out.Mismatches, fmt.Sprintf("%s rose by %d but %d increments were acknowledged", n, got, res.Acked[n]))
			}
			extra += got - res.Acked[n]
		}
		if extra > maybe {
			out.Mismatches = append(out.Mismatches, fmt.Sprintf("counters rose by %d more than acknowledged, with only %d ambiguous requests", extra, maybe))
		}
		out.Verified = len(out.Mismatches) == 0
	}
	if e.json {
		if err := e.printJSON(out); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(e.stdout, res.Summary())
		codes := make([]string, 0, len(res.ByError))
		for code := range res.ByError {
			codes = append(codes, code)
		}
		sort.Strings(codes)
		for _, code := range codes {
			fmt.Fprintf(e.stdout, "  %d × %s\n", res.ByError[code], code)
		}
		if *verify && out.Verified {
			fmt.Fprintf(e.stdout, "verified: the counters rose by exactly the %d acknowledged increments\n", res.Requests)
		}
	}
	if *verify && !out.Verified {
		return fmt.Errorf("verification failed: %s", strings.Join(out.Mismatches, "; "))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func readAll(c *client.Client, names []string, timeout time.Duration) (map[string]int64, error) {
	out := map[string]int64{}
	for i := 0; i < len(names); i += 1000 {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		vals, err := c.MultiGet(ctx, names[i:min(i+1000, len(names))], client.Linearizable)
		cancel()
		if err != nil {
			return nil, err
		}
		for _, v := range vals {
			out[v.Name] = v.Value
		}
	}
	return out, nil
}

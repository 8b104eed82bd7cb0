// Package loadgen drives increments at a tally cluster over HTTP and
// measures throughput and latency: the engine behind `tally bench`.
//
// It speaks plain HTTP (keep-alive, one connection per client), not the
// retrying client library, so every latency is one request's and every
// error is counted instead of hidden by a retry.
package loadgen

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Config is one load run.
type Config struct {
	Addrs    []string      // nodes; client i talks to Addrs[i % len]
	Clients  int           // concurrent keep-alive clients
	Requests int64         // stop after this many requests (0: use Duration)
	Duration time.Duration // stop after this long (when Requests is 0)
	Counter  string        // counter name (prefix when Counters > 1)
	Counters int           // counters to spread over, uniformly (default 1)
}

// Result is what a run measured.
type Result struct {
	Requests int64            // requests answered 200
	Errors   int64            // anything else, including transport errors
	ByError  map[string]int64 // error code or transport error → count
	Acked    map[string]int64 // counter → acknowledged increments
	Elapsed  time.Duration
	hist     *hdrhistogram.Histogram
}

// Throughput is acknowledged requests per second.
func (r *Result) Throughput() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// Percentile returns the latency at percentile p (0–100) of successful requests.
func (r *Result) Percentile(p float64) time.Duration {
	return time.Duration(r.hist.ValueAtQuantile(p))
}

// Summary is one line in the style of redis-benchmark.
func (r *Result) Summary() string {
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/1e6) }
	return fmt.Sprintf("incr: %d requests in %.2fs, %.0f requests/s, p50 %s, p99 %s, p99.9 %s, max %s, errors %d",
		r.Requests, r.Elapsed.Seconds(), r.Throughput(), ms(r.Percentile(50)), ms(r.Percentile(99)),
		ms(r.Percentile(99.9)), ms(time.Duration(r.hist.Max())), r.Errors)
}

// CounterName is the name of counter i of a run.
func (c *Config) CounterName(i int) string {
	if c.Counters <= 1 {
		return c.Counter
	}
	return fmt.Sprintf("%s-%d", c.Counter, i)
}

// Run sends increments until the request count or duration is reached.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Clients <= 0 || len(cfg.Addrs) == 0 || cfg.Counter == "" {
		return nil, fmt.Errorf("loadgen: need clients, addresses and a counter name")
	}
	if cfg.Counters <= 0 {
		cfg.Counters = 1
	}
	if cfg.Requests <= 0 && cfg.Duration <= 0 {
		return nil, fmt.Errorf("loadgen: need a request count or a duration")
	}
	tr := &http.Transport{MaxIdleConnsPerHost: cfg.Clients, MaxConnsPerHost: 0, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	urls := make([][]string, len(cfg.Addrs)) // node → counter → URL
	for n, a := range cfg.Addrs {
		if !strings.Contains(a, "://") {
			a = "http://" + a
		}
		for i := 0; i < cfg.Counters; i++ {
			urls[n] = append(urls[n], a+"/v1/counters/"+url.PathEscape(cfg.CounterName(i))+"/incr")
		}
	}

	var issued atomic.Int64
	type local struct {
		hist   *hdrhistogram.Histogram
		acked  []int64
		errors map[string]int64
	}
	locals := make([]*local, cfg.Clients)
	var wg sync.WaitGroup
	start := time.Now()
	// The duration stops new requests but never cuts one short: a write
	// cancelled in flight may still have counted, and the verification
	// after a run needs every request's outcome.
	end := start.Add(cfg.Duration)
	for c := 0; c < cfg.Clients; c++ {
		l := &local{hist: hdrhistogram.New(1, int64(time.Minute), 3), acked: make([]int64, cfg.Counters), errors: map[string]int64{}}
		locals[c] = l
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			node := urls[c%len(urls)]
			for i := c; ; i += cfg.Clients {
				if ctx.Err() != nil {
					return
				}
				if cfg.Requests > 0 && issued.Add(1) > cfg.Requests {
					return
				}
				if cfg.Requests <= 0 && time.Now().After(end) {
					return
				}
				k := i % cfg.Counters
				t0 := time.Now()
				code := post(ctx, hc, node[k])
				if code == "" {
					l.hist.RecordValue(int64(time.Since(t0)))
					l.acked[k]++
				} else {
					l.errors[code]++
				}
			}
		}(c)
	}
	wg.Wait()
	res := &Result{Elapsed: time.Since(start), ByError: map[string]int64{}, Acked: map[string]int64{},
		hist: hdrhistogram.New(1, int64(time.Minute), 3)}
	for _, l := range locals {
		res.hist.Merge(l.hist)
		for k, v := range l.acked {
			if v > 0 {
				res.Acked[cfg.CounterName(k)] += v
				res.Requests += v
			}
		}
		for code, v := range l.errors {
			res.ByError[code] += v
			res.Errors += v
		}
	}
	return res, nil
}

// post sends one increment; it returns "" on 200, else a short reason.
func post(ctx context.Context, hc *http.Client, u string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, nil)
	if err != nil {
		return "bad request"
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "transport: " + err.Error()
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return ""
	}
	code := fmt.Sprintf("http %d", resp.StatusCode)
	if i := strings.Index(string(body), `"code":"`); i >= 0 {
		rest := string(body[i+8:])
		if j := strings.IndexByte(rest, '"'); j >= 0 {
			code += " " + rest[:j]
		}
	}
	return code
}

// Package loadgen drives increments (and optionally reads) at a counter
// store and measures throughput and latency: the engine behind
// `tally bench`, and, through the Target interface, behind the side-by-side
// runs against other stores, so every system is driven by the same client
// loop and measured by the same histogram.
//
// The tally target speaks plain HTTP (keep-alive, one connection per
// client), not the retrying client library, so every latency is one
// request's and every error is counted instead of hidden by a retry.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Op is one increment of a batch.
type Op struct {
	Counter string
	Delta   int64
}

// Target is one system under load, as one client sees it. A Target is
// used by one goroutine at a time; New gives every client its own.
type Target interface {
	// Incr adds delta to counter and returns once the store acknowledged it.
	Incr(ctx context.Context, counter string, delta int64) error
	// IncrBatch applies ops in one request (or transaction, or pipeline).
	// A non-nil return fails every op; otherwise errs[i] (len(errs) ==
	// len(ops)) says how op i went, nil meaning acknowledged.
	IncrBatch(ctx context.Context, ops []Op, errs []error) error
	// Read returns the counters' values, in order.
	Read(ctx context.Context, counters []string) ([]int64, error)
}

// Error is a failed request or op as a Target reports it.
type Error struct {
	Code  string // short, stable reason: "http 503 no_leader", "transport", ...
	Maybe bool   // the write may have been applied (unknown outcome)
}

func (e *Error) Error() string { return e.Code }

// classify turns any error into a code for the error table and says
// whether the write may have been applied. Unknown errors are assumed
// ambiguous: the verification then allows them to have counted.
func classify(err error) (string, bool) {
	var e *Error
	switch {
	case errors.As(err, &e):
		return e.Code, e.Maybe
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout", true
	case errors.Is(err, context.Canceled):
		return "canceled", true
	}
	s := err.Error()
	if len(s) > 80 {
		s = s[:80]
	}
	return s, true
}

// Config is one load run.
type Config struct {
	Clients  int           // concurrent clients
	Requests int64         // stop after this many requests (0: use Duration)
	Duration time.Duration // stop issuing after this long (when Requests is 0)
	Counter  string        // counter name (a prefix when Counters > 1)
	Counters int           // how many counters (default 1)
	Dist     Dist          // how ops pick a counter (default hot for 1 counter, else uniform)
	Batch    int           // increments per request (default 1: a single increment)
	Reads    float64       // share of requests that read one counter instead, 0–1
	Timeline bool          // keep throughput and p99 per second
	Seed     int64         // seeds the distributions (client i uses Seed+i)
}

func (c *Config) setDefaults() error {
	if c.Clients <= 0 || c.Counter == "" {
		return errors.New("loadgen: need clients and a counter name")
	}
	if c.Requests <= 0 && c.Duration <= 0 {
		return errors.New("loadgen: need a request count or a duration")
	}
	if c.Counters <= 0 {
		c.Counters = 1
	}
	if c.Dist == "" {
		c.Dist = Uniform
		if c.Counters == 1 {
			c.Dist = Hot
		}
	}
	if _, err := ParseDist(string(c.Dist)); err != nil {
		return err
	}
	if c.Batch <= 0 {
		c.Batch = 1
	}
	if c.Reads < 0 || c.Reads > 1 {
		return fmt.Errorf("loadgen: reads share %v is not within 0–1", c.Reads)
	}
	return nil
}

// CounterName is the name of counter i of a run.
func (c *Config) CounterName(i int) string {
	if c.Counters <= 1 {
		return c.Counter
	}
	return fmt.Sprintf("%s-%d", c.Counter, i)
}

// Names lists every counter of the run.
func (c *Config) Names() []string {
	n := max(c.Counters, 1)
	names := make([]string, n)
	for i := range names {
		names[i] = c.CounterName(i)
	}
	return names
}

// Result is what a run measured.
type Result struct {
	Requests     int64            // requests answered in full (writes and reads)
	Incrs        int64            // acknowledged increments
	Reads        int64            // reads answered
	Errors       int64            // failed increments and failed reads
	MaybeApplied int64            // failed increments that may have applied anyway
	ByError      map[string]int64 // error code → failed increments or reads
	Acked        map[string]int64 // counter → sum of acknowledged deltas
	Start        time.Time
	Elapsed      time.Duration
	Timeline     []Second // per second of the run, when Config.Timeline
	hist         *hdrhistogram.Histogram
}

// Ops is acknowledged increments plus answered reads.
func (r *Result) Ops() int64 { return r.Incrs + r.Reads }

// Throughput is Ops per second.
func (r *Result) Throughput() float64 { return float64(r.Ops()) / r.Elapsed.Seconds() }

// RequestRate is fully answered requests per second.
func (r *Result) RequestRate() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

// Percentile returns the request latency at percentile p (0–100) of the
// requests answered in full.
func (r *Result) Percentile(p float64) time.Duration {
	return time.Duration(r.hist.ValueAtQuantile(p))
}

// Max is the slowest answered request.
func (r *Result) Max() time.Duration { return time.Duration(r.hist.Max()) }

// newHist covers 1 ns to a minute at 3 significant digits.
func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, int64(time.Minute), 3) }

// client is one client's private tallies, merged after the run so the
// hot path takes no lock (except the timeline's, when asked for).
type client struct {
	hist   *hdrhistogram.Histogram
	acked  []int64
	incrs  int64
	reads  int64
	reqs   int64
	errs   map[string]int64
	maybe  int64
	failed int64
}

func (c *client) fail(err error, n int64, write bool) {
	code, maybe := classify(err)
	c.errs[code] += n
	c.failed += n
	if write && maybe {
		c.maybe += n
	}
}

// Run drives the load: cfg.Clients goroutines, client i using newTarget(i),
// until the request count or the duration is reached.
func Run(ctx context.Context, cfg Config, newTarget func(client int) Target) (*Result, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	names := cfg.Names()
	var issued atomic.Int64
	var tl *timeline
	clients := make([]*client, cfg.Clients)
	var wg sync.WaitGroup
	start := time.Now()
	if cfg.Timeline {
		tl = newTimeline(start)
	}
	// The duration stops new requests but never cuts one short: a write
	// cancelled in flight may still have counted, and the verification
	// after a run needs every request's outcome.
	end := start.Add(cfg.Duration)
	for ci := range cfg.Clients {
		c := &client{hist: newHist(), acked: make([]int64, len(names)), errs: map[string]int64{}}
		clients[ci] = c
		tg := newTarget(ci)
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := newPicker(cfg.Dist, len(names), cfg.Seed+int64(ci))
			ops := make([]Op, cfg.Batch)
			idx := make([]int, cfg.Batch)
			errs := make([]error, cfg.Batch)
			read := make([]string, 1)
			for {
				if ctx.Err() != nil {
					return
				}
				if cfg.Requests > 0 && issued.Add(1) > cfg.Requests {
					return
				}
				if cfg.Requests <= 0 && time.Now().After(end) {
					return
				}
				isRead := cfg.Reads > 0 && p.float() < cfg.Reads
				var k int
				if isRead || cfg.Batch == 1 {
					k = p.next()
				} else {
					for j := range ops {
						idx[j] = p.next()
						ops[j] = Op{Counter: names[idx[j]], Delta: 1}
						errs[j] = nil
					}
				}
				t0 := time.Now()
				var ok int64 // increments or reads this request got answered
				full := false
				switch {
				case isRead:
					read[0] = names[k]
					if _, err := tg.Read(ctx, read); err != nil {
						c.fail(err, 1, false)
					} else {
						c.reads++
						ok, full = 1, true
					}
				case cfg.Batch == 1:
					if err := tg.Incr(ctx, names[k], 1); err != nil {
						c.fail(err, 1, true)
					} else {
						c.acked[k]++
						c.incrs++
						ok, full = 1, true
					}
				default:
					if err := tg.IncrBatch(ctx, ops, errs); err != nil {
						c.fail(err, int64(len(ops)), true)
						break
					}
					full = true
					for j, e := range errs {
						if e != nil {
							c.fail(e, 1, true)
							full = false
							continue
						}
						c.acked[idx[j]] += ops[j].Delta
						c.incrs++
						ok++
					}
				}
				lat := time.Since(t0)
				if full {
					c.reqs++
					c.hist.RecordValue(int64(lat))
				}
				if tl != nil {
					tl.record(t0.Add(lat), lat, ok, full)
				}
			}
		}()
	}
	wg.Wait()
	res := &Result{Start: start, Elapsed: time.Since(start), ByError: map[string]int64{}, Acked: map[string]int64{}, hist: newHist()}
	for _, c := range clients {
		res.hist.Merge(c.hist)
		for k, v := range c.acked {
			if v != 0 {
				res.Acked[names[k]] += v
			}
		}
		res.Incrs += c.incrs
		res.Reads += c.reads
		res.Requests += c.reqs
		res.Errors += c.failed
		res.MaybeApplied += c.maybe
		for code, v := range c.errs {
			res.ByError[code] += v
		}
	}
	if tl != nil {
		res.Timeline = tl.seconds(res.Elapsed)
	}
	return res, nil
}

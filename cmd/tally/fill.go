package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

func init() {
	register(&command{
		name:    "fill",
		args:    "--counters N [--keys K] [--prefix P] [--clients C]",
		summary: "store N counters and K increments with an idempotency key each, through /v1/batch (sizing runs)",
		run:     runFill,
	})
}

// fillBatch is the batch size fill sends: the most /v1/batch takes.
const fillBatch = 1000

// fillTries is how often fill sends an op before it counts it failed.
const fillTries = 5

// runFill writes through /v1/batch as fast as the cluster takes it: N new
// counters (<prefix>:c:<i>, +1 each), then K increments with a key each
// over 1,000 counters (<prefix>:k:<i mod 1000>), keys the prefix plus 32 bytes, so that
// what a key costs is measured at the size clients send. An op that fails
// is sent again, up to fillTries times in all (a count may then come out
// one higher, after an outcome_unknown; sizing runs do not mind); one that
// keeps failing is counted and reported, and the command fails.
func runFill(e *env, args []string) error {
	fs := e.flagSet()
	counters := fs.Int("counters", 0, "new counters to store")
	keys := fs.Int("keys", 0, "increments with an idempotency key each")
	prefix := fs.String("prefix", "fill", "name prefix (run again with another to add more)")
	clients := fs.Int("clients", 8, "concurrent requests")
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usagef("fill takes flags only")
	}
	if *counters < 0 || *keys < 0 || *counters+*keys == 0 || *clients < 1 {
		return usagef("fill needs --counters or --keys (>= 0, not both 0) and --clients >= 1")
	}
	f := &filler{addrs: e.addrs(), http: e.httpClient(e.timeout)}
	for _, phase := range []struct {
		what string
		n    int
		op   func(i int) fillOp
	}{
		{"counters", *counters, func(i int) fillOp { return fillOp{Name: *prefix + ":c:" + strconv.Itoa(i), Delta: 1} }},
		{"keyed increments", *keys, func(i int) fillOp {
			return fillOp{Name: *prefix + ":k:" + strconv.Itoa(i%1000), Delta: 1, Key: *prefix + fmt.Sprintf("-%08x-4000-8000-%012x", i>>32, i)}
		}},
	} {
		if phase.n == 0 {
			continue
		}
		start := time.Now()
		failed, resent, firstErr := f.run(phase.n, *clients, phase.op)
		d := time.Since(start)
		if e.json {
			if err := e.printJSON(map[string]any{"phase": phase.what, "ops": phase.n, "failed": failed, "resent": resent, "seconds": d.Seconds(), "ops_per_second": float64(phase.n) / d.Seconds()}); err != nil {
				return err
			}
		} else {
			fmt.Fprintf(e.stdout, "%s: %d in %.1fs (%.0f/s), %d resent, %d failed\n", phase.what, phase.n, d.Seconds(), float64(phase.n)/d.Seconds(), resent, failed)
		}
		if failed > 0 {
			return fmt.Errorf("fill: %d of %d %s failed; first: %v", failed, phase.n, phase.what, firstErr)
		}
	}
	return nil
}

type fillOp struct {
	Name  string `json:"name"`
	Delta int64  `json:"delta"`
	Key   string `json:"idempotency_key,omitempty"`
}

type filler struct {
	addrs []string // base URLs
	http  *http.Client
}

// run sends ops 0..n-1 in batches from clients goroutines, each on its own
// node in turn (and a resend on the next); it returns how many ops failed,
// how many were sent again, and the first failure.
func (f *filler) run(n, clients int, op func(int) fillOp) (int64, int64, error) {
	var next, failed, resent atomic.Int64
	var once sync.Once
	var first error
	fail := func(k int, err error) {
		failed.Add(int64(k))
		once.Do(func() { first = err })
	}
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ops := make([]fillOp, 0, fillBatch)
			for {
				lo := int(next.Add(fillBatch)) - fillBatch
				if lo >= n {
					return
				}
				ops = ops[:0]
				for i := lo; i < min(n, lo+fillBatch); i++ {
					ops = append(ops, op(i))
				}
				for try := 1; ; try++ {
					// A resend goes to the next node: the last may be down.
					url := f.addrs[(c+try-1)%len(f.addrs)] + "/v1/batch"
					bad, err := f.send(url, ops)
					if len(bad) == 0 {
						break
					}
					if try == fillTries {
						fail(len(bad), err)
						break
					}
					resent.Add(int64(len(bad)))
					ops = bad
					time.Sleep(time.Duration(try) * 100 * time.Millisecond) // backoff before resending
				}
			}
		}()
	}
	wg.Wait()
	return failed.Load(), resent.Load(), first
}

// send posts one batch; it returns the ops that failed, and the first
// failure.
func (f *filler) send(url string, ops []fillOp) ([]fillOp, error) {
	body, err := json.Marshal(map[string]any{"ops": ops})
	if err != nil {
		return ops, err
	}
	resp, err := f.http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return ops, err
	}
	defer resp.Body.Close()
	var out struct {
		Results []struct {
			Error *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		return ops, fmt.Errorf("POST %s: %s (%v)", url, resp.Status, err)
	}
	if len(out.Results) != len(ops) {
		return ops, fmt.Errorf("POST %s: %d results for %d ops", url, len(out.Results), len(ops))
	}
	var bad []fillOp
	var firstErr error
	for i, r := range out.Results {
		if r.Error != nil {
			if bad == nil {
				firstErr = fmt.Errorf("%s: %s", r.Error.Code, r.Error.Message)
			}
			bad = append(bad, ops[i])
		}
	}
	return bad, firstErr
}

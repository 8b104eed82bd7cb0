package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestRunCountsEveryRequest: against a fake node that fails every 10th
// request, the run must report exactly the successes per counter and the
// errors by code.
func TestRunCountsEveryRequest(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int64{}
	n := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		n++
		if n%10 == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":{"code":"no_leader","message":"x"}}`))
			return
		}
		name := strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/v1/counters/"), "/incr")
		seen[name]++
		w.Write([]byte(`{"name":"x","value":1,"exact":true}`))
	}))
	defer srv.Close()
	h := NewHTTP([]string{srv.URL}, 8, "")
	defer h.Close()
	res, err := Run(context.Background(), Config{Clients: 8, Requests: 1000, Counter: "c", Counters: 4}, h.Client)
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 900 || res.Incrs != 900 || res.Errors != 100 || res.ByError["http 503 no_leader"] != 100 || res.MaybeApplied != 0 {
		t.Fatalf("requests %d incrs %d errors %d maybe %d %v; want 900, 900, 100, 0", res.Requests, res.Incrs, res.Errors, res.MaybeApplied, res.ByError)
	}
	if len(seen) != 4 {
		t.Errorf("server saw counters %v, want 4", seen)
	}
	for name, v := range seen {
		if res.Acked[name] != v {
			t.Errorf("%s: acked %d, server counted %d", name, res.Acked[name], v)
		}
	}
	if res.Percentile(50) <= 0 || res.Percentile(99) < res.Percentile(50) {
		t.Errorf("percentiles: p50 %v p99 %v", res.Percentile(50), res.Percentile(99))
	}
	rep := NewReport("", "", Config{Clients: 8, Counters: 4, Batch: 1}, res)
	if s := rep.Summary(); !strings.HasPrefix(s, "incr: 900 ops in ") || !strings.HasSuffix(s, "errors 100 (http 503 no_leader 100)") {
		t.Errorf("summary: %s", s)
	}
}

func TestPickerDistributions(t *testing.T) {
	const draws, n = 100_000, 10
	count := func(d Dist, n int) []int {
		p := newPicker(d, n, 7)
		c := make([]int, n)
		for range draws {
			k := p.next()
			if k < 0 || k >= n {
				t.Fatalf("%s picked %d, outside [0,%d)", d, k, n)
			}
			c[k]++
		}
		return c
	}
	if c := count(Hot, n); c[0] != draws {
		t.Errorf("hot: %v, want every draw on counter 0", c)
	}
	for k, v := range count(Uniform, n) {
		if v < draws/n*8/10 || v > draws/n*12/10 {
			t.Errorf("uniform: counter %d drawn %d times of %d, want about %d", k, v, draws, draws/n)
		}
	}
	z := count(Zipf, 1000)
	for k := 1; k < 10; k++ {
		if z[k] > z[k-1] {
			t.Errorf("zipf: counter %d drawn more (%d) than counter %d (%d)", k, z[k], k-1, z[k-1])
		}
	}
	head := 0
	for _, v := range z[:10] {
		head += v
	}
	// With s = 1.1 the 10 hottest of 1000 take about 48%; uniform would give 1%.
	if head < draws*4/10 {
		t.Errorf("zipf: the 10 hottest of 1000 counters got %d of %d draws, want over 40%%", head, draws)
	}
	if c := count(Uniform, 1); c[0] != draws {
		t.Errorf("one counter: %v", c)
	}
	if _, err := ParseDist("pareto"); err == nil {
		t.Error("ParseDist accepted pareto")
	}
}

// memTarget is an in-memory store that fails chosen requests and ops, so
// the run's accounting can be compared with what it really applied.
type memTarget struct {
	mu       *sync.Mutex
	vals     map[string]int64
	requests *int
	reads    *int
}

var (
	errRefused = &Error{Code: "refused"}              // nothing applied
	errUnknown = &Error{Code: "unknown", Maybe: true} // applied, but the answer was lost
)

func (m memTarget) Incr(_ context.Context, c string, d int64) error {
	return m.IncrBatch(context.Background(), []Op{{c, d}}, make([]error, 1))
}

// IncrBatch: every 5th request is refused whole; every 7th an unknown
// outcome that did apply; within the rest, every op on a counter named
// "*-3" is refused on its own.
func (m memTarget) IncrBatch(_ context.Context, ops []Op, errs []error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	*m.requests++
	switch {
	case *m.requests%5 == 0:
		return errRefused
	case *m.requests%7 == 0:
		for _, op := range ops {
			m.vals[op.Counter] += op.Delta
		}
		return errUnknown
	}
	for i, op := range ops {
		if strings.HasSuffix(op.Counter, "-3") {
			errs[i] = errRefused
			continue
		}
		m.vals[op.Counter] += op.Delta
	}
	return nil
}

func (m memTarget) Read(_ context.Context, cs []string) ([]int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	*m.reads++
	out := make([]int64, len(cs))
	for i, c := range cs {
		out[i] = m.vals[c]
	}
	return out, nil
}

func newMem() memTarget {
	return memTarget{mu: &sync.Mutex{}, vals: map[string]int64{}, requests: new(int), reads: new(int)}
}

func TestBatchAccounting(t *testing.T) {
	m := newMem()
	cfg := Config{Clients: 4, Requests: 700, Counter: "c", Counters: 8, Batch: 16}
	res, err := Run(context.Background(), cfg, func(int) Target { return m })
	if err != nil {
		t.Fatal(err)
	}
	var applied, acked int64
	for _, v := range m.vals {
		applied += v
	}
	for name, v := range res.Acked {
		acked += v
		if m.vals[name] < v {
			t.Errorf("%s: acked %d, store has %d", name, v, m.vals[name])
		}
		if strings.HasSuffix(name, "-3") {
			t.Errorf("%s acked %d increments the store refused", name, v)
		}
	}
	if res.Incrs != acked {
		t.Errorf("Incrs %d, acked per counter add up to %d", res.Incrs, acked)
	}
	// 700 requests: 140 refused whole (every 5th), 100 unknown but applied
	// (every 7th, less the 20 that are also 5th), 16 ops each.
	if res.MaybeApplied != 80*16 || res.ByError["unknown"] != 80*16 || res.ByError["refused"] < 140*16 {
		t.Errorf("maybe %d, by error %v; want 1280 unknown and at least 2240 refused", res.MaybeApplied, res.ByError)
	}
	if res.Incrs+res.Errors != 700*16 {
		t.Errorf("increments %d + errors %d != %d sent", res.Incrs, res.Errors, 700*16)
	}
	if applied != acked+res.MaybeApplied {
		t.Errorf("store applied %d, acked %d + ambiguous %d", applied, acked, res.MaybeApplied)
	}
	names := (&Config{Counter: "c", Counters: 8}).Names()
	if bad := Check(names, map[string]int64{}, m.vals, res); len(bad) != 0 {
		t.Errorf("Check of a correct store: %v", bad)
	}
	lost := copyMap(m.vals)
	// c-0 loses everything, c-1 gains as much: the total is unchanged.
	lost["c-1"] += lost["c-0"]
	lost["c-0"] = 0
	if bad := Check(names, map[string]int64{}, lost, res); len(bad) != 1 || !strings.Contains(bad[0], "c-0") {
		t.Errorf("Check of a store that lost an increment: %v", bad)
	}
	extra := copyMap(m.vals)
	extra["c-2"] += res.MaybeApplied + 1
	if bad := Check(names, map[string]int64{}, extra, res); len(bad) != 1 || !strings.Contains(bad[0], "more than acknowledged") {
		t.Errorf("Check of a store that counted too much: %v", bad)
	}
}

func copyMap(m map[string]int64) map[string]int64 {
	out := map[string]int64{}
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestReadShare(t *testing.T) {
	m := newMem()
	res, err := Run(context.Background(), Config{Clients: 2, Requests: 4000, Counter: "c", Reads: 0.25}, func(int) Target { return m })
	if err != nil {
		t.Fatal(err)
	}
	if res.Reads != int64(*m.reads) || res.Incrs+res.Errors != int64(*m.requests) {
		t.Fatalf("run counted %d reads and %d writes, the store saw %d and %d", res.Reads, res.Incrs+res.Errors, *m.reads, *m.requests)
	}
	if res.Reads < 800 || res.Reads > 1200 {
		t.Errorf("%d reads of 4000 requests, want about 1000", res.Reads)
	}
	if res.Ops() != res.Reads+res.Incrs {
		t.Errorf("Ops %d", res.Ops())
	}
}

// TestHTTPBatchAndRead: the HTTP target's batch and read requests, against
// a fake node that refuses one op of each batch.
func TestHTTPBatchAndRead(t *testing.T) {
	var mu sync.Mutex
	vals := map[string]int64{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/v1/batch":
			var req struct {
				Ops []struct {
					Name  string `json:"name"`
					Delta int64  `json:"delta"`
				} `json:"ops"`
			}
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				http.Error(w, err.Error(), 400)
				return
			}
			var res []string
			for i, op := range req.Ops {
				if i == 2 {
					res = append(res, `{"name":"x","error":{"code":"outcome_unknown","message":"m"}}`)
					continue
				}
				vals[op.Name] += op.Delta
				res = append(res, `{"name":"x","value":1,"exact":true}`)
			}
			io.WriteString(w, `{"results":[`+strings.Join(res, ",")+`]}`)
		case r.Method == http.MethodGet && r.URL.Path == "/v1/counters":
			if r.URL.Query().Get("consistency") != "stale" {
				http.Error(w, "want stale", 400)
				return
			}
			var cs []string
			for _, n := range r.URL.Query()["name"] {
				b, _ := json.Marshal(map[string]any{"name": n, "value": vals[n]})
				cs = append(cs, string(b))
			}
			io.WriteString(w, `{"counters":[`+strings.Join(cs, ",")+`]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	h := NewHTTP([]string{strings.TrimPrefix(srv.URL, "http://")}, 1, "stale")
	defer h.Close()
	tg := h.Client(0)
	ops := []Op{{"a", 1}, {"b", 2}, {"a", 3}, {"c/d", 4}}
	errs := make([]error, len(ops))
	if err := tg.IncrBatch(context.Background(), ops, errs); err != nil {
		t.Fatal(err)
	}
	var e *Error
	if errs[0] != nil || errs[1] != nil || errs[3] != nil || !errors.As(errs[2], &e) || !e.Maybe || e.Code != "op outcome_unknown" {
		t.Fatalf("per-op errors %v", errs)
	}
	got, err := tg.Read(context.Background(), []string{"a", "b", "c/d"})
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{1, 2, 4}; got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("read %v, want %v", got, want)
	}
	if err := tg.Incr(context.Background(), "a", 1); err == nil || err.Error() != "http 404" {
		t.Errorf("incr on a server without the route: %v", err)
	}
}

func TestExecuteJSONAndTimeline(t *testing.T) {
	m := newMem()
	dir := t.TempDir()
	marks := dir + "/marks"
	b := Bench{Config: Config{Clients: 3, Requests: 300, Counter: "c", Counters: 5, Dist: Zipf, Batch: 4},
		System: "mem", Workload: "w", JSON: true, Verify: true, TimelineFile: dir + "/t.svg", MarksFile: marks}
	var out bytes.Buffer
	reads := 0
	read := func(ctx context.Context, names []string) (map[string]int64, error) {
		// The verification's second read comes after the load: a fault
		// marked now, as an injector would while the run goes on, falls
		// within the run's timeline (the run is far shorter than its
		// one-second bucket). The millisecond is rounded up: a run can
		// take less than one, and a mark truncated to its millisecond
		// would then fall before the run's start.
		if reads++; reads == 2 {
			ms := (time.Now().UnixNano() + int64(time.Millisecond) - 1) / int64(time.Millisecond)
			writeFile(t, marks, "# faults\n"+itoa(ms)+" kill n1\n\n")
		}
		return ReadAll(ctx, m, names)
	}
	err := b.Execute(context.Background(), &out, func(int) Target { return m }, read)
	// Counter c-3 refuses every op, so nothing is lost and the run verifies.
	if err != nil {
		t.Fatalf("execute: %v\n%s", err, out.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("not one JSON report: %v: %s", err, out.String())
	}
	if rep.System != "mem" || rep.Workload != "w" || rep.Batch != 4 || rep.Dist != Zipf || rep.Counters != 5 ||
		rep.Verified == nil || !*rep.Verified || rep.Incrs+rep.Errors != 1200 || len(rep.Timeline) == 0 {
		t.Errorf("report %+v", rep)
	}
	var sum int64
	for _, s := range rep.Timeline {
		sum += s.Ops
	}
	if sum != rep.Ops {
		t.Errorf("timeline adds up to %d ops, report says %d", sum, rep.Ops)
	}
	svg := readFile(t, dir+"/t.svg")
	wellFormed(t, svg)
	if !strings.Contains(svg, "kill n1") || strings.Count(svg, "<polyline") != 2 {
		t.Errorf("timeline lacks the mark or the two lines:\n%s", svg)
	}

	// A store that loses an increment fails the verification.
	lossy := newMem()
	b = Bench{Config: Config{Clients: 1, Requests: 10, Counter: "c"}, Verify: true}
	n := 0
	read = func(ctx context.Context, names []string) (map[string]int64, error) {
		n++
		v, err := ReadAll(ctx, lossy, names)
		if n == 2 {
			v["c"] -= 2 // one more than the one ambiguous (7th) request could explain
		}
		return v, err
	}
	out.Reset()
	err = b.Execute(context.Background(), &out, func(int) Target { return lossy }, read)
	if err == nil || !strings.Contains(err.Error(), "verification failed") {
		t.Errorf("lossy store: %v", err)
	}
}

func TestSVG(t *testing.T) {
	start := time.UnixMilli(1_700_000_000_000)
	secs := []Second{{At: 0, Span: 1, Ops: 1200, OpsPerSec: 1200, Requests: 1200, P99Ms: 3.5}, {At: 1, Span: 1},
		{At: 2, Span: 1, Ops: 980, OpsPerSec: 980, Requests: 61, P99Ms: 41}, {At: 3, Span: 0.01, Ops: 7, OpsPerSec: 700, Requests: 7, P99Ms: 5}}
	marks := []Mark{{At: start.Add(1500 * time.Millisecond), Label: `kill <n2> & "pause"`}, {At: start.Add(-time.Second), Label: "before"}}
	var b strings.Builder
	if err := WriteSVG(&b, "t <1>", start, secs, marks); err != nil {
		t.Fatal(err)
	}
	wellFormed(t, b.String())
	if got := polylinePoints(t, b.String()); got[0] != 3 || got[1] != 4 {
		t.Errorf("ops/s line has %d points (want 3: the drain is no rate), p99 line %d (want 4)", got[0], got[1])
	}
	if !strings.Contains(b.String(), "kill &lt;n2&gt;") || strings.Contains(b.String(), "before") {
		t.Errorf("marks: in-run mark escaped, out-of-run mark dropped:\n%s", b.String())
	}
	b.Reset()
	if err := WriteSVG(&b, "empty", start, nil, nil); err != nil {
		t.Fatal(err)
	}
	wellFormed(t, b.String())
	if strings.Contains(b.String(), "NaN") || strings.Contains(b.String(), "Inf") {
		t.Errorf("empty run plots non-numbers:\n%s", b.String())
	}
}

func TestReadMarks(t *testing.T) {
	marks, err := ReadMarks(strings.NewReader("1700000000123 kill n1 (leader of 7)\n\n# note\n1700000001000\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(marks) != 2 || marks[0].At.UnixMilli() != 1700000000123 || marks[0].Label != "kill n1 (leader of 7)" || marks[1].Label != "" {
		t.Errorf("marks %+v", marks)
	}
	if _, err := ReadMarks(strings.NewReader("soon kill\n")); err == nil {
		t.Error("a line without a timestamp parsed")
	}
}

// polylinePoints counts the points of each polyline, in order.
func polylinePoints(t *testing.T, svg string) []int {
	t.Helper()
	var out []int
	for _, part := range strings.Split(svg, "<polyline")[1:] {
		_, pts, ok := strings.Cut(part, `points="`)
		if !ok {
			t.Fatalf("polyline without points: %s", part)
		}
		pts, _, _ = strings.Cut(pts, `"`)
		out = append(out, len(strings.Fields(pts)))
	}
	if len(out) != 2 {
		t.Fatalf("%d polylines, want 2", len(out))
	}
	return out
}

// wellFormed fails unless s parses as XML with an <svg> root.
func wellFormed(t *testing.T, s string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(s))
	root := ""
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, s)
		}
		if se, ok := tok.(xml.StartElement); ok && root == "" {
			root = se.Name.Local
		}
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
}

// WithKeys gives every increment an Idempotency-Key of its own; without it,
// increments carry none.
func TestHTTPKeys(t *testing.T) {
	for _, keyed := range []bool{false, true} {
		var mu sync.Mutex
		keys := map[string]int{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			keys[r.Header.Get("Idempotency-Key")]++
			mu.Unlock()
			w.Write([]byte(`{"name":"x","value":1,"exact":true}`))
		}))
		var opts []HTTPOption
		if keyed {
			opts = append(opts, WithKeys())
		}
		h := NewHTTP([]string{srv.URL}, 4, "", opts...)
		if _, err := Run(context.Background(), Config{Clients: 4, Requests: 400, Counter: "c", Counters: 1}, h.Client); err != nil {
			t.Fatal(err)
		}
		h.Close()
		srv.Close()
		switch {
		case !keyed && (len(keys) != 1 || keys[""] != 400):
			t.Fatalf("unkeyed run sent keys: %v", len(keys))
		case keyed && (len(keys) != 400 || keys[""] != 0):
			t.Fatalf("keyed run: %d distinct keys for 400 increments", len(keys))
		}
	}
}

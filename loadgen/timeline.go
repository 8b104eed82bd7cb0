package loadgen

import (
	"bufio"
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Second is one second of a run.
type Second struct {
	At        int     `json:"t"`           // seconds since the start
	Span      float64 `json:"span_s"`      // how much of it the run lasted: 1, less for the last
	Ops       int64   `json:"ops"`         // acknowledged increments and answered reads that completed in it
	OpsPerSec float64 `json:"ops_per_sec"` // Ops / Span
	Requests  int64   `json:"requests"`    // requests answered in full that completed in it
	P99Ms     float64 `json:"p99_ms"`      // p99 latency of those requests (0 when none)
}

// timeline buckets completions by second. One mutex for all: it is only
// on when asked for, and its critical section is a few counter bumps.
type timeline struct {
	start time.Time
	mu    sync.Mutex
	ops   []int64
	hists []*hdrhistogram.Histogram
}

func newTimeline(start time.Time) *timeline { return &timeline{start: start} }

func (t *timeline) record(done time.Time, lat time.Duration, ops int64, full bool) {
	s := max(int(done.Sub(t.start)/time.Second), 0)
	t.mu.Lock()
	defer t.mu.Unlock()
	for len(t.ops) <= s {
		t.ops = append(t.ops, 0)
		// Two significant digits in microseconds keep a bucket small
		// (a few KB) and p99 within 1%, plenty for a plot.
		t.hists = append(t.hists, hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 2))
	}
	t.ops[s] += ops
	if full {
		t.hists[s].RecordValue(max(int64(lat/time.Microsecond), 1))
	}
}

// seconds closes the timeline of a run that lasted elapsed.
func (t *timeline) seconds(elapsed time.Duration) []Second {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]Second, len(t.ops))
	for i := range out {
		h := t.hists[i]
		span := min(max(elapsed.Seconds()-float64(i), 0.001), 1)
		out[i] = Second{At: i, Span: span, Ops: t.ops[i], OpsPerSec: float64(t.ops[i]) / span, Requests: h.TotalCount()}
		if h.TotalCount() > 0 {
			out[i].P99Ms = float64(h.ValueAtQuantile(99)) / 1e3
		}
	}
	return out
}

// Mark is an event to show on a timeline, such as an injected fault.
type Mark struct {
	At    time.Time
	Label string
}

// ReadMarks parses lines of "unix-milliseconds label" (the label may be
// empty or have spaces); blank lines and lines starting with # are skipped.
func ReadMarks(r io.Reader) ([]Mark, error) {
	var marks []Mark
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || s[0] == '#' {
			continue
		}
		ts, label, _ := strings.Cut(s, " ")
		ms, err := strconv.ParseInt(ts, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("marks line %d: want \"unix-ms label\", got %q", line, s)
		}
		marks = append(marks, Mark{At: time.UnixMilli(ms), Label: strings.TrimSpace(label)})
	}
	return marks, sc.Err()
}

// minSpan: a last second shorter than this (the drain after the
// duration, when clients stop) is left off the ops/s line: too short to
// give a rate, it would show as a spike or a cliff.
const minSpan = 0.5

// WriteSVG plots ops/s (left axis) and p99 latency (right axis) per second
// of a run, with marks as labelled vertical lines. Hand-written SVG: no
// plotting dependency for two polylines.
func WriteSVG(w io.Writer, title string, start time.Time, secs []Second, marks []Mark) error {
	const (
		width, height          = 960, 400
		left, right, top, foot = 70, 70, 40, 50
		plotW, plotH           = width - left - right, height - top - foot
	)
	n := max(len(secs), 1)
	var maxOps, maxP99 float64
	var rated []Second
	for _, s := range secs {
		if s.Span >= minSpan {
			rated = append(rated, s)
			maxOps = math.Max(maxOps, s.OpsPerSec)
		}
		maxP99 = math.Max(maxP99, s.P99Ms)
	}
	maxOps, maxP99 = niceCeil(maxOps), niceCeil(maxP99)
	// Each second's value sits at the middle of its second.
	x := func(sec float64) float64 { return left + sec/float64(n)*plotW }
	yOps := func(v float64) float64 { return top + plotH - v/maxOps*plotH }
	yP99 := func(v float64) float64 { return top + plotH - v/maxP99*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15">%s</text>`+"\n", left, html.EscapeString(title))
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#999"/>`+"\n", left, top, plotW, plotH)
	for i := 0; i <= 4; i++ { // grid and both axes' labels
		f := float64(i) / 4
		y := top + plotH - f*plotH
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", left, left+plotW, y, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" fill="#1f5fbf">%s</text>`+"\n", left-6, y+4, short(f*maxOps))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" fill="#c0392b">%s</text>`+"\n", left+plotW+6, y+4, short(f*maxP99))
	}
	step := max(1, n/10)
	for s := 0; s <= n; s += step {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%d</text>`+"\n", x(float64(s)), top+plotH+16, s)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">seconds</text>`+"\n", left+plotW/2, height-12)
	fmt.Fprintf(&b, `<text x="14" y="%d" fill="#1f5fbf" transform="rotate(-90 14 %d)" text-anchor="middle">ops/s</text>`+"\n", top+plotH/2, top+plotH/2)
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#c0392b" transform="rotate(90 %d %d)" text-anchor="middle">p99 ms</text>`+"\n", width-14, top+plotH/2, width-14, top+plotH/2)

	polyline := func(color string, secs []Second, y func(Second) float64) {
		pts := make([]string, len(secs))
		for i, s := range secs {
			pts[i] = fmt.Sprintf("%.1f,%.1f", x(float64(s.At)+0.5), y(s))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", color, strings.Join(pts, " "))
	}
	polyline("#1f5fbf", rated, func(s Second) float64 { return yOps(s.OpsPerSec) })
	polyline("#c0392b", secs, func(s Second) float64 { return yP99(s.P99Ms) })

	for _, m := range marks {
		at := m.At.Sub(start).Seconds()
		if at < 0 || at > float64(n) {
			continue // outside the run
		}
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#555" stroke-dasharray="4 3"/>`+"\n", x(at), x(at), top, top+plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" font-size="11" fill="#555">%s</text>`+"\n", x(at)+3, top+12, html.EscapeString(m.Label))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#1f5fbf">— ops/s</text><text x="%d" y="%d" fill="#c0392b">— p99 latency</text>`+"\n", width-right-190, 22, width-right-100, 22)
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten, so axis labels
// are round numbers; 0 becomes 1 to keep the scale finite.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func short(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + "M"
	case v >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + "k"
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

package ui

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

const (
	// scrapeTimeout bounds one member's two requests (/metrics and
	// /v1/hot): a member that is down or stuck costs the page at most
	// this, and the others are scraped meanwhile.
	scrapeTimeout = 2 * time.Second
	// maxParallel bounds the scrapes in flight from this node, over
	// every page request: a read token cannot turn one node into a
	// flood of requests to the others.
	maxParallel = 16
	// maxBody bounds what is read of one answer.
	maxBody = 16 << 20

	// The answer's lists are for a screen, not an export.
	maxHot         = 20
	maxSplits      = 100
	maxSplitEvents = 20
)

// The metrics read from each member (node/metrics.go and httpapi's
// request metrics).
const (
	metricRequests    = "tally_http_requests_total"           // counter {route, code}
	metricDuration    = "tally_http_request_duration_seconds" // histogram {route}
	metricEntryOps    = "tally_raft_entry_ops"                // histogram: ops per raft entry proposed
	metricLeading     = "tally_shards_leading"                // gauge
	metricCPU         = "process_cpu_seconds_total"           // counter
	metricRSS         = "process_resident_memory_bytes"       // gauge
	metricForwardedIn = "tally_forwarded_in_total"            // counter
)

// opRoute says whether requests on route are counter operations, the
// ones whose rate and latency the dashboard shows. Streams (watch,
// changes) last as long as their client and would swamp any quantile;
// the cluster, hot, metrics and dashboard calls are observation, not load.
func opRoute(route string) bool {
	if route == "/v1/batch" {
		return true
	}
	return strings.HasPrefix(route, "/v1/counters") && !strings.HasSuffix(route, "/watch")
}

// nodesAnswer is GET api/nodes: each member's cumulative counts as of
// its scrape, and the cluster's hot and split counters gathered from
// every member's /v1/hot. The counts are cumulative (since the member
// started): the page derives rates and quantiles from the difference
// between two successive answers, so the server keeps no state per
// viewer.
type nodesAnswer struct {
	Nodes       []nodeStats  `json:"nodes"`
	Hot         []hotRate    `json:"hot"`
	Splits      []splitInfo  `json:"splits"`
	SplitsTotal int          `json:"splits_total"`
	SplitEvents []splitEvent `json:"split_events"`
	AutoSplit   *autoSplit   `json:"auto_split,omitempty"`
}

type nodeStats struct {
	ID     string `json:"id"`
	URL    string `json:"url"`
	State  string `json:"state"`
	Health string `json:"health"`
	// Error is why /metrics could not be read; the counts below are
	// then absent. HotError is the same for /v1/hot.
	Error    string `json:"error,omitempty"`
	HotError string `json:"hot_error,omitempty"`
	// At is when the member's metrics were read (Unix milliseconds):
	// rates divide by the time between two of these.
	At int64 `json:"at,omitempty"`
	// Requests are the counter operations it served over HTTP, Errors
	// those answered with a 5xx; Latency their durations.
	Requests float64    `json:"requests"`
	Errors   float64    `json:"errors"`
	Latency  *histogram `json:"latency,omitempty"`
	// RaftOps are the ops in raft entries it proposed as a shard leader
	// (over every protocol, forwarded ones included), RaftEntries those
	// entries: ops over entries is how well group commit batches.
	RaftOps       float64 `json:"raft_ops"`
	RaftEntries   float64 `json:"raft_entries"`
	ForwardedIn   float64 `json:"forwarded_in"`
	ShardsLeading float64 `json:"shards_leading"`
	CPUSeconds    float64 `json:"cpu_seconds"`
	RSSBytes      float64 `json:"rss_bytes"`
}

// histogram is a cumulative Prometheus histogram without its +Inf
// bucket (JSON has no infinity): Count is the +Inf bucket.
type histogram struct {
	LE     []float64 `json:"le"`
	Counts []float64 `json:"counts"`
	Count  float64   `json:"count"`
	Sum    float64   `json:"sum"`
}

// The parts of GET /v1/hot the dashboard shows (node.HotReport).
type hotReport struct {
	AutoSplit bool                 `json:"auto_split"`
	Threshold float64              `json:"threshold"`
	SustainS  float64              `json:"sustain_s"`
	SplitTo   int                  `json:"split_to"`
	Hot       []hotRate            `json:"hot"`
	Splits    []splitEvent         `json:"splits"`
	Known     map[string]splitInfo `json:"known"`
}

type hotRate struct {
	Name string  `json:"name"`
	Rate float64 `json:"rate"`
	Node string  `json:"node"`
}

type splitInfo struct {
	Name  string    `json:"name"`
	Split int       `json:"split"`
	Since time.Time `json:"since"`
}

type splitEvent struct {
	Name   string    `json:"name"`
	From   int       `json:"from,omitempty"`
	To     int       `json:"to"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	Err    string    `json:"error,omitempty"`
	Node   string    `json:"node"`
}

type autoSplit struct {
	Enabled   bool    `json:"enabled"`
	Threshold float64 `json:"threshold"`
	SustainS  float64 `json:"sustain_s"`
	SplitTo   int     `json:"split_to"`
}

type scraper struct {
	cluster Cluster
	log     *slog.Logger
	timeout time.Duration // per member; scrapeTimeout but in tests
	slots   chan struct{} // maxParallel of them
}

func (s *scraper) handleNodes(w http.ResponseWriter, r *http.Request) {
	members := s.cluster.Members(r.Context())
	client := s.cluster.Client()
	authz := r.Header.Get("Authorization")

	stats := make([]nodeStats, len(members))
	hots := make([]*hotReport, len(members))
	var wg sync.WaitGroup
	for i, m := range members {
		stats[i] = nodeStats{ID: m.ID, URL: m.URL, State: m.State, Health: m.Health}
		switch {
		case m.URL == "":
			stats[i].Error = "no HTTP address known"
			continue
		case m.Health != "alive" || (m.State != "active" && m.State != "leaving"):
			// Only members that serve are asked: not the dead, not those
			// that left or were removed (whose addresses may be anyone's now).
			stats[i].Error = "not asked: the member is " + m.State + " and " + m.Health
			continue
		}
		authz := authz
		if !m.Verified {
			authz = "" // the token goes only to members that proved who they are
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
			defer cancel()
			select {
			case s.slots <- struct{}{}:
				defer func() { <-s.slots }()
			case <-ctx.Done():
				stats[i].Error = "not scraped: " + ctx.Err().Error()
				return
			}
			var inner sync.WaitGroup
			inner.Go(func() {
				if err := scrapeMetrics(ctx, client, m.URL, authz, &stats[i]); err != nil {
					stats[i].Error = err.Error()
					s.log.Debug("dashboard: scrape failed", "member", m.ID, "err", err)
				}
			})
			hot, err := scrapeHot(ctx, client, m.URL, authz)
			if err != nil {
				stats[i].HotError = err.Error()
				s.log.Debug("dashboard: hot report failed", "member", m.ID, "err", err)
			}
			hots[i] = hot
			inner.Wait()
		})
	}
	wg.Wait()

	ans := merge(members, hots)
	ans.Nodes = stats
	w.Header().Set("Content-Type", "application/json")
	if err := json.NewEncoder(w).Encode(ans); err != nil {
		s.log.Debug("dashboard: writing the answer", "err", err)
	}
}

// get fetches base+path with the caller's Authorization and returns the
// open answer; the caller closes its body.
func get(ctx context.Context, client *http.Client, base, path, accept, authz string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", accept)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		msg := resp.Status
		var e struct {
			Error struct{ Message string } `json:"error"`
		}
		if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e) == nil && e.Error.Message != "" {
			msg += ": " + e.Error.Message
		}
		return nil, fmt.Errorf("GET %s: %s", path, msg)
	}
	return resp, nil
}

func scrapeMetrics(ctx context.Context, client *http.Client, base, authz string, st *nodeStats) error {
	resp, err := get(ctx, client, base, "/metrics", string(expfmt.NewFormat(expfmt.TypeTextPlain)), authz)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := expfmt.NewDecoder(io.LimitReader(resp.Body, maxBody), expfmt.ResponseFormat(resp.Header))
	fams := map[string]*dto.MetricFamily{}
	for {
		var mf dto.MetricFamily
		err := dec.Decode(&mf)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("GET /metrics: %w", err)
		}
		switch mf.GetName() {
		case metricRequests, metricDuration, metricEntryOps, metricLeading, metricCPU, metricRSS, metricForwardedIn:
			fams[mf.GetName()] = &mf
		}
	}
	st.At = time.Now().UnixMilli()
	readStats(fams, st)
	return nil
}

// readStats fills st from the metric families it needs; a family that
// is missing (a node of another version) leaves its fields zero.
func readStats(fams map[string]*dto.MetricFamily, st *nodeStats) {
	if f := fams[metricRequests]; f != nil {
		for _, m := range f.GetMetric() {
			if !opRoute(label(m, "route")) {
				continue
			}
			v := m.GetCounter().GetValue()
			st.Requests += v
			if strings.HasPrefix(label(m, "code"), "5") {
				st.Errors += v
			}
		}
	}
	if f := fams[metricDuration]; f != nil {
		var h histogram
		at := map[float64]int{} // upper bound → index in h
		for _, m := range f.GetMetric() {
			if !opRoute(label(m, "route")) {
				continue
			}
			hm := m.GetHistogram()
			h.Count += float64(hm.GetSampleCount())
			h.Sum += hm.GetSampleSum()
			for _, b := range hm.GetBucket() {
				le := b.GetUpperBound()
				if math.IsInf(le, 1) {
					continue
				}
				i, ok := at[le]
				if !ok {
					i = len(h.LE)
					at[le] = i
					h.LE = append(h.LE, le)
					h.Counts = append(h.Counts, 0)
				}
				h.Counts[i] += float64(b.GetCumulativeCount())
			}
		}
		sortBuckets(&h)
		st.Latency = &h
	}
	if f := fams[metricEntryOps]; f != nil && len(f.GetMetric()) > 0 {
		h := f.GetMetric()[0].GetHistogram()
		st.RaftOps, st.RaftEntries = h.GetSampleSum(), float64(h.GetSampleCount())
	}
	st.ShardsLeading = first(fams[metricLeading], func(m *dto.Metric) float64 { return m.GetGauge().GetValue() })
	st.CPUSeconds = first(fams[metricCPU], func(m *dto.Metric) float64 { return m.GetCounter().GetValue() })
	st.RSSBytes = first(fams[metricRSS], func(m *dto.Metric) float64 { return m.GetGauge().GetValue() })
	st.ForwardedIn = first(fams[metricForwardedIn], func(m *dto.Metric) float64 { return m.GetCounter().GetValue() })
}

func sortBuckets(h *histogram) {
	idx := make([]int, len(h.LE))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmp.Compare(h.LE[a], h.LE[b]) })
	le, counts := make([]float64, len(idx)), make([]float64, len(idx))
	for k, i := range idx {
		le[k], counts[k] = h.LE[i], h.Counts[i]
	}
	h.LE, h.Counts = le, counts
}

func first(f *dto.MetricFamily, v func(*dto.Metric) float64) float64 {
	if f == nil || len(f.GetMetric()) == 0 {
		return 0
	}
	return v(f.GetMetric()[0])
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func scrapeHot(ctx context.Context, client *http.Client, base, authz string) (*hotReport, error) {
	resp, err := get(ctx, client, base, "/v1/hot", "application/json", authz)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var h hotReport
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&h); err != nil {
		return nil, fmt.Errorf("GET /v1/hot: %w", err)
	}
	return &h, nil
}

// merge gathers the members' hot reports into the cluster's: a
// counter's write rate is tracked by its home shard's leader, so each
// member knows only its own shards' hot counters, and learns of a split
// only when it applies it.
func merge(members []Member, hots []*hotReport) nodesAnswer {
	ans := nodesAnswer{Hot: []hotRate{}, Splits: []splitInfo{}, SplitEvents: []splitEvent{}}
	rates := map[string]hotRate{}
	splits := map[string]splitInfo{}
	for i, h := range hots {
		if h == nil {
			continue
		}
		if ans.AutoSplit == nil {
			ans.AutoSplit = &autoSplit{Enabled: h.AutoSplit, Threshold: h.Threshold, SustainS: h.SustainS, SplitTo: h.SplitTo}
		}
		id := members[i].ID
		for _, r := range h.Hot {
			// After a leader change two members may both report a
			// counter: the higher rate is the current leader's.
			if old, ok := rates[r.Name]; !ok || r.Rate > old.Rate {
				rates[r.Name] = hotRate{Name: r.Name, Rate: r.Rate, Node: id}
			}
		}
		for name, k := range h.Known {
			if old, ok := splits[name]; !ok || k.Split > old.Split {
				splits[name] = splitInfo{Name: name, Split: k.Split, Since: k.Since}
			}
		}
		for _, e := range h.Splits {
			e.Node = id
			ans.SplitEvents = append(ans.SplitEvents, e)
		}
	}
	for _, r := range rates {
		ans.Hot = append(ans.Hot, r)
	}
	slices.SortFunc(ans.Hot, func(a, b hotRate) int {
		return cmp.Or(cmp.Compare(b.Rate, a.Rate), strings.Compare(a.Name, b.Name))
	})
	ans.Hot = ans.Hot[:min(len(ans.Hot), maxHot)]
	for _, s := range splits {
		ans.Splits = append(ans.Splits, s)
	}
	ans.SplitsTotal = len(ans.Splits)
	slices.SortFunc(ans.Splits, func(a, b splitInfo) int {
		return cmp.Or(cmp.Compare(b.Split, a.Split), strings.Compare(a.Name, b.Name))
	})
	ans.Splits = ans.Splits[:min(len(ans.Splits), maxSplits)]
	slices.SortFunc(ans.SplitEvents, func(a, b splitEvent) int {
		return cmp.Or(b.At.Compare(a.At), strings.Compare(a.Name, b.Name))
	})
	ans.SplitEvents = ans.SplitEvents[:min(len(ans.SplitEvents), maxSplitEvents)]
	return ans
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"tally/loadgen"
)

// The tallyd metrics a run's node cost is computed from, and the sample
// keys they become. Only the CPU one is required; the others count where a
// node exports them.
var scalarMetrics = map[string]string{
	"process_cpu_seconds_total": loadgen.SampleCPU,       // user + system seconds of the process
	"tally_log_commits_total":   loadgen.SampleCommits,   // raft log store commits
	"tally_log_syncs_total":     loadgen.SampleSyncs,     // fdatasyncs of the raft log
	"tally_forwarded_out_total": loadgen.SampleForwarded, // requests sent on to another node's shard leader
}

// entryOpsMetric is a histogram of the ops in each raft entry the node
// proposed: its sum is ops, its count entries.
const entryOpsMetric = "tally_raft_entry_ops"

// nodeScraper reads the Prometheus /metrics of every node under load.
type nodeScraper struct {
	addrs []string // base URLs, each node once
	hc    *http.Client
}

// newNodeScraper scrapes addrs (host:port or URLs). A node named twice in
// --addr is scraped once, so its CPU is not counted twice.
func newNodeScraper(addrs []string, hc *http.Client) *nodeScraper {
	s := &nodeScraper{hc: hc}
	for _, a := range addrs {
		if u := loadgen.BaseURL(a); !slices.Contains(s.addrs, u) {
			s.addrs = append(s.addrs, u)
		}
	}
	return s
}

// Scrape reads every node at once, so the samples are close together in
// time, and returns them in the order of the addresses.
func (s *nodeScraper) Scrape(ctx context.Context) []loadgen.NodeSample {
	out := make([]loadgen.NodeSample, len(s.addrs))
	var wg sync.WaitGroup
	for i, base := range s.addrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vals, err := s.scrape(ctx, base)
			out[i] = loadgen.NodeSample{Addr: base[strings.Index(base, "://")+3:], Values: vals, Err: err}
		}()
	}
	wg.Wait()
	return out
}

func (s *nodeScraper) scrape(ctx context.Context, base string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	// The classic text format, which every Prometheus client serves.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := s.hc.Do(req)
	if err != nil {
		// The url.Error around it would repeat the method and URL.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseNodeMetrics(io.LimitReader(resp.Body, 64<<20))
}

// parseNodeMetrics reads a /metrics answer in the Prometheus text format
// into sample values. It fails when the answer does not parse or has no
// process CPU counter.
func parseNodeMetrics(r io.Reader) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("/metrics does not parse: %w", err)
	}
	out := map[string]float64{}
	for name, key := range scalarMetrics {
		if mf, ok := fams[name]; ok {
			if v, ok := scalarSum(mf); ok {
				out[key] = v
			}
		}
	}
	if mf, ok := fams[entryOpsMetric]; ok && mf.GetType() == dto.MetricType_HISTOGRAM && len(mf.GetMetric()) > 0 {
		var sum, count float64
		for _, m := range mf.GetMetric() {
			sum += m.GetHistogram().GetSampleSum()
			count += float64(m.GetHistogram().GetSampleCount())
		}
		out[loadgen.SampleEntryOps], out[loadgen.SampleEntries] = sum, count
	}
	if _, ok := out[loadgen.SampleCPU]; !ok {
		return nil, fmt.Errorf("/metrics has no process_cpu_seconds_total")
	}
	return out, nil
}

// scalarSum adds up a counter, gauge or untyped family over its label
// sets; a family of another type is not used.
func scalarSum(mf *dto.MetricFamily) (float64, bool) {
	var sum float64
	for _, m := range mf.GetMetric() {
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			sum += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			sum += m.GetGauge().GetValue()
		case dto.MetricType_UNTYPED:
			sum += m.GetUntyped().GetValue()
		default:
			return 0, false
		}
	}
	return sum, len(mf.GetMetric()) > 0
}

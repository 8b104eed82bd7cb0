package loadgen

import (
	"context"
	"fmt"
	"io"
	"strings"
)

// NodeSample is one node's counters at one moment, by the Sample* keys;
// a key is missing when the node does not export that counter.
type NodeSample struct {
	Addr   string
	Values map[string]float64
	Err    error // the node could not be read; Values is nil
}

// The keys of NodeSample.Values.
const (
	SampleCPU       = "cpu_seconds" // user + system CPU seconds of the node process (required)
	SampleEntryOps  = "entry_ops"   // ops in the raft entries the node proposed
	SampleEntries   = "entries"     // raft entries the node proposed
	SampleCommits   = "log_commits" // raft log store commits
	SampleSyncs     = "log_syncs"   // fdatasyncs of the raft log
	SampleForwarded = "forwarded"   // requests the node forwarded to another node
)

// A NodeScraper reads the counters of the nodes under load, one sample
// per node, always the same nodes in the same order.
type NodeScraper interface {
	Scrape(ctx context.Context) []NodeSample
}

// NodeCost is what the nodes under load spent on a run: the increase of
// their counters from right before the load to right after it. Totals
// cover the measured nodes only (Measured of len(Nodes)). A figure whose
// counters no node exports is nil.
type NodeCost struct {
	Nodes          []NodeUse `json:"nodes"`
	Measured       int       `json:"measured"`    // nodes scraped before and after
	CPUSeconds     float64   `json:"cpu_seconds"` // user + system, summed over the measured nodes
	CPUMicrosPerOp *float64  `json:"cpu_us_per_op,omitempty"`
	Entries        *float64  `json:"entries,omitempty"` // raft entries proposed
	OpsPerEntry    *float64  `json:"ops_per_entry,omitempty"`
	Fsyncs         *float64  `json:"fsyncs,omitempty"`
	FsyncsPerIncr  *float64  `json:"fsyncs_per_increment,omitempty"`
	// FsyncsEstimated: some node counts no fsyncs of its own
	// (tally_log_syncs_total), so its fsyncs are two per log commit, what
	// a bolt commit costs.
	FsyncsEstimated bool     `json:"fsyncs_estimated,omitempty"`
	Forwarded       *float64 `json:"forwarded,omitempty"` // requests forwarded between nodes
	// ForwardedShare is Forwarded over the requests answered in full
	// (0–1; a batch spanning shards may be forwarded to several).
	ForwardedShare *float64 `json:"forwarded_share,omitempty"`
}

// NodeUse is one node's part of a NodeCost.
type NodeUse struct {
	Addr            string   `json:"addr"`
	Error           string   `json:"error,omitempty"` // why the node is not measured
	CPUSeconds      *float64 `json:"cpu_seconds,omitempty"`
	CPUMicrosPerOp  *float64 `json:"cpu_us_per_op,omitempty"`
	Entries         *float64 `json:"entries,omitempty"`
	Fsyncs          *float64 `json:"fsyncs,omitempty"`
	FsyncsEstimated bool     `json:"fsyncs_estimated,omitempty"`
}

func ptr(v float64) *float64 { return &v }

// sumPtr adds v to *p, making p when it is nil.
func sumPtr(p **float64, v float64) {
	if *p == nil {
		*p = ptr(0)
	}
	**p += v
}

// NewNodeCost compares the samples taken before and after a run (the same
// nodes in the same order) that had requests requests answered in full
// and acknowledged ops operations, incrs of them increments.
func NewNodeCost(before, after []NodeSample, requests, ops, incrs int64) *NodeCost {
	c := &NodeCost{}
	var entryOps float64
	for i, b := range before {
		u := NodeUse{Addr: b.Addr}
		var a NodeSample
		if i < len(after) {
			a = after[i]
		}
		d, err := nodeDelta(b, a)
		if err != nil {
			u.Error = err.Error()
			c.Nodes = append(c.Nodes, u)
			continue
		}
		c.Measured++
		cpu := d[SampleCPU]
		u.CPUSeconds = ptr(cpu)
		c.CPUSeconds += cpu
		if ops > 0 {
			u.CPUMicrosPerOp = ptr(cpu * 1e6 / float64(ops))
		}
		if n, ok := d[SampleEntries]; ok {
			u.Entries = ptr(n)
			sumPtr(&c.Entries, n)
			entryOps += d[SampleEntryOps]
		}
		if s, ok := d[SampleSyncs]; ok {
			u.Fsyncs = ptr(s)
		} else if k, ok := d[SampleCommits]; ok {
			u.Fsyncs, u.FsyncsEstimated = ptr(2*k), true
		}
		if u.Fsyncs != nil {
			sumPtr(&c.Fsyncs, *u.Fsyncs)
			c.FsyncsEstimated = c.FsyncsEstimated || u.FsyncsEstimated
		}
		if f, ok := d[SampleForwarded]; ok {
			sumPtr(&c.Forwarded, f)
		}
		c.Nodes = append(c.Nodes, u)
	}
	if c.Measured > 0 && ops > 0 {
		c.CPUMicrosPerOp = ptr(c.CPUSeconds * 1e6 / float64(ops))
	}
	if c.Entries != nil && *c.Entries > 0 {
		c.OpsPerEntry = ptr(entryOps / *c.Entries)
	}
	if c.Fsyncs != nil && incrs > 0 {
		c.FsyncsPerIncr = ptr(*c.Fsyncs / float64(incrs))
	}
	if c.Forwarded != nil && requests > 0 {
		c.ForwardedShare = ptr(*c.Forwarded / float64(requests))
	}
	return c
}

// nodeDelta is the increase of every counter found in both samples.
func nodeDelta(b, a NodeSample) (map[string]float64, error) {
	switch {
	case b.Err != nil:
		return nil, fmt.Errorf("not scraped before the run: %w", b.Err)
	case a.Err != nil:
		return nil, fmt.Errorf("not scraped after the run: %w", a.Err)
	case a.Values == nil:
		return nil, fmt.Errorf("not scraped after the run")
	}
	d := map[string]float64{}
	for name, v0 := range b.Values {
		v1, ok := a.Values[name]
		if !ok {
			continue
		}
		if v1 < v0 {
			return nil, fmt.Errorf("%s went down from %g to %g: the node restarted during the run", name, v0, v1)
		}
		d[name] = v1 - v0
	}
	if _, ok := d[SampleCPU]; !ok {
		return nil, fmt.Errorf("no CPU seconds after the run")
	}
	return d, nil
}

// WriteText prints the cost in a few lines under the run's summary.
func (c *NodeCost) WriteText(w io.Writer) {
	over := fmt.Sprintf("%d nodes", c.Measured)
	if c.Measured == 1 {
		over = "1 node"
	}
	if c.Measured < len(c.Nodes) {
		over = fmt.Sprintf("%d of %d nodes; the others are not counted", c.Measured, len(c.Nodes))
	}
	switch {
	case c.Measured == 0:
		fmt.Fprintf(w, "node CPU: not measured, no node could be scraped\n")
	case c.CPUMicrosPerOp != nil:
		fmt.Fprintf(w, "node CPU: %.1f µs per op, %.3f s in all (%s)\n", *c.CPUMicrosPerOp, c.CPUSeconds, over)
	default:
		fmt.Fprintf(w, "node CPU: %.3f s in all, no op acknowledged (%s)\n", c.CPUSeconds, over)
	}
	for _, u := range c.Nodes {
		if u.Error != "" {
			fmt.Fprintf(w, "  %s: not measured: %s\n", u.Addr, u.Error)
			continue
		}
		line := fmt.Sprintf("%.3f s", *u.CPUSeconds)
		if u.CPUMicrosPerOp != nil {
			line = fmt.Sprintf("%.1f µs per op (%s)", *u.CPUMicrosPerOp, line)
		}
		if u.Entries != nil {
			line += fmt.Sprintf(", %.0f raft entries proposed", *u.Entries)
		}
		if u.Fsyncs != nil {
			line += fmt.Sprintf(", %.0f fsyncs", *u.Fsyncs)
		}
		fmt.Fprintf(w, "  %s: %s\n", u.Addr, line)
	}
	var parts []string
	if c.OpsPerEntry != nil {
		parts = append(parts, fmt.Sprintf("ops per raft entry %.2f (%.0f entries)", *c.OpsPerEntry, *c.Entries))
	}
	if c.FsyncsPerIncr != nil {
		s := fmt.Sprintf("fsyncs per increment %.3f (%.0f fsyncs)", *c.FsyncsPerIncr, *c.Fsyncs)
		if c.FsyncsEstimated {
			s += ", counted as 2 per log commit where a node counts no fsyncs"
		}
		parts = append(parts, s)
	}
	if c.Forwarded != nil {
		s := fmt.Sprintf("%.0f requests forwarded between nodes", *c.Forwarded)
		if c.ForwardedShare != nil {
			s += fmt.Sprintf(" (%.1f%% of requests)", 100**c.ForwardedShare)
		}
		parts = append(parts, s)
	}
	if len(parts) > 0 {
		fmt.Fprintf(w, "%s\n", strings.Join(parts, "; "))
	}
}

package node

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"tally/raftstore"
)

// metrics are the node's Prometheus metrics, on its own registry so that
// several nodes in one test process do not collide. Frontends register
// their own (httpapi: requests by route) on the same registry.
type metrics struct {
	reg          *prometheus.Registry
	batchOps     prometheus.Histogram
	forwardedOut prometheus.Counter
	forwardedIn  prometheus.Counter
	autoSplits   prometheus.Counter
}

func newMetrics(n *Node) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		batchOps: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tally_raft_entry_ops", Help: "Ops per raft entry proposed by this node (group commit).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
		forwardedOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tally_forwarded_out_total", Help: "Requests this node forwarded to a shard leader.",
		}),
		forwardedIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tally_forwarded_in_total", Help: "Forwarded writes this node served as shard leader.",
		}),
		autoSplits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tally_auto_splits_total", Help: "Hot counters this node split automatically.",
		}),
	}
	leading := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tally_shards_leading", Help: "Shards this node leads.",
	}, func() float64 {
		k := 0
		for _, sh := range n.hostedShards() {
			if sh.IsLeader() {
				k++
			}
		}
		return float64(k)
	})
	keys := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tally_dedup_keys", Help: "Idempotency keys this node's replicas remember.",
	}, func() float64 { return float64(n.dedupKeys()) })
	keyCap := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "tally_dedup_max_keys", Help: "The cap on tally_dedup_keys past which new keys are refused (--dedup-max-keys).",
	}, func() float64 { return float64(n.cfg.DedupMaxKeys) })
	// The shared raft log's work: fsyncs per increment is syncs over the
	// increments, summed over the nodes.
	logStat := func(name, help string, pick func(raftstore.Stats) uint64) prometheus.CounterFunc {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 {
			n.mu.RLock()
			logs := n.logs
			n.mu.RUnlock()
			if logs == nil {
				return 0
			}
			return float64(pick(logs.Stats()))
		})
	}
	m.reg.MustRegister(
		logStat("tally_log_commits_total", "Synced commits of the node's raft log store (appends, term and vote writes).",
			func(s raftstore.Stats) uint64 { return s.Commits }),
		logStat("tally_log_syncs_total", "fdatasyncs the node's raft log store issued.",
			func(s raftstore.Stats) uint64 { return s.Syncs }),
		logStat("tally_log_appends_total", "Raft log appends (one per shard replica write) the commits carried.",
			func(s raftstore.Stats) uint64 { return s.Appends }),
		logStat("tally_log_entries_total", "Raft log entries the commits carried.",
			func(s raftstore.Stats) uint64 { return s.Entries }))
	m.reg.MustRegister(m.batchOps, m.forwardedOut, m.forwardedIn, m.autoSplits, leading, keys, keyCap,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) observeBatch(ops int) { m.batchOps.Observe(float64(ops)) }

// Metrics is the node's Prometheus registry: a frontend registers its own
// metrics there and serves it (GET /metrics).
func (n *Node) Metrics() *prometheus.Registry { return n.metrics.reg }

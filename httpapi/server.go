// Package httpapi is tally's HTTP API (DESIGN.md's table): chi routes,
// JSON in and out, and the mapping of the core's errors to HTTP statuses.
// It holds no cluster logic: every handler parses its request, calls one
// typed operation of the node's core and renders the answer.
package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tally/auth"
	"tally/logbridge"
	"tally/node"
	"tally/placement"
	"tally/transport"
	"tally/ui"
)

// Core is what the HTTP API needs of a node (*node.Node is one).
type Core interface {
	ID() string
	RaftAddr() string
	Config() node.Config
	Formed() bool
	FormationError() error
	Ready() bool
	ShardCount() int
	KeyPlacement() placement.Map

	Add(ctx context.Context, req node.AddRequest) (node.AddResult, error)
	AddBatch(ctx context.Context, reqs []node.AddRequest) ([]node.AddOutcome, error)
	Read(ctx context.Context, req node.ReadRequest) (node.ReadResult, error)
	ReadMany(ctx context.Context, names []string, c node.Consistency) ([]node.ReadResult, error)
	Like(ctx context.Context, req node.ActorRequest) (node.ActorResult, error)
	Unlike(ctx context.Context, req node.ActorRequest) (node.ActorResult, error)
	IsMember(ctx context.Context, req node.MemberRequest) (bool, error)
	Split(ctx context.Context, req node.SplitRequest) (node.SplitResult, error)
	Delete(ctx context.Context, name string) (bool, error)
	Watch(ctx context.Context, name string, c node.Consistency) (*node.Watch, error)
	ReadChanges(ctx context.Context, cursor node.Cursor) ([]node.ChangeEvent, node.Cursor, error)
	NowCursor(ctx context.Context) (node.Cursor, error)
	WaitChanges(ctx context.Context, cursor node.Cursor) bool
	Dump(ctx context.Context, fn func(shard int, c node.DumpedCounter) error) (node.Cursor, error)

	ClusterDetail(ctx context.Context) node.ClusterStatus
	Decommission(ctx context.Context, id string) (node.NodeChange, error)
	RemoveNode(ctx context.Context, id string) (node.NodeChange, error)
	HotReport() node.HotReport
	ShardDigests() []node.ShardDigest
	Metrics() *prometheus.Registry
	Faults() *transport.Faults // nil unless the node runs with --enable-faults
}

var _ Core = (*node.Node)(nil)

// NewServer returns an HTTP server for core, ready to be a node's
// Frontend (node.Serve).
// The timeouts bound what a slow or silent client can hold: headers must
// arrive within ReadHeaderTimeout and the whole request within
// ReadTimeout, an answer may take WriteTimeout to write, and an idle
// keep-alive connection is closed after IdleTimeout.
func NewServer(core Core) *http.Server {
	// What net/http logs is a client's failing (a bad TLS handshake, a
	// malformed request): debug, so a flood of them cannot flood the log.
	errLog := logbridge.Std(core.Config().Logger, "http")
	errLog.SetPrefix("[DEBUG] ")
	return &http.Server{
		Handler:           Handler(core),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          errLog,
	}
}

type api struct {
	core     Core
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	// tokens, when set (the node's Config.Tokens), make every call but
	// /healthz and /readyz need a bearer token whose role covers it (see
	// requiredRole).
	tokens *auth.Tokens
}

// Handler returns the API's router over core. It registers the request
// metrics on the core's registry (once per registry).
func Handler(core Core) http.Handler {
	cfg := core.Config()
	a := &api{core: core, requests: requestsMetric(core.Metrics()), latency: latencyMetric(core.Metrics()), tokens: cfg.Tokens}
	r := chi.NewRouter()
	r.Use(a.countRequests)
	if a.tokens.Enabled() {
		r.Use(a.authorize)
	}
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such route: "+r.Method+" "+r.URL.Path, nil)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path, nil)
	})
	// Counter routes need the cluster's shard count, known once formed.
	r.Group(func(r chi.Router) {
		r.Use(a.requireFormed)
		a.counterRoutes(r)
	})
	r.Get("/v1/cluster", a.handleCluster)
	r.Post("/v1/cluster/nodes/{id}/decommission", a.handleNodeChange(a.core.Decommission))
	r.Delete("/v1/cluster/nodes/{id}", a.handleNodeChange(a.core.RemoveNode))
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", a.handleReady)
	r.Handle("/metrics", promhttp.HandlerFor(core.Metrics(), promhttp.HandlerOpts{}))
	r.Mount("/ui", ui.Handler(&dashboard{core: core}, cfg.Logger))
	if cfg.EnableFaults {
		a.faultRoutes(r)
	}
	if cfg.Pprof {
		r.Mount("/debug", middleware.Profiler())
	}
	return r
}

func (a *api) counterRoutes(r chi.Router) {
	r.Post("/v1/counters/{name}/incr", a.handleAdd(1))
	r.Post("/v1/counters/{name}/decr", a.handleAdd(-1))
	r.Get("/v1/counters/{name}", a.handleGet)
	r.Get("/v1/counters/{name}/watch", a.handleWatch)
	r.Delete("/v1/counters/{name}", a.handleDelete)
	r.Put("/v1/counters/{name}/actors/{actor}", a.handleActor(a.core.Like))
	r.Delete("/v1/counters/{name}/actors/{actor}", a.handleActor(a.core.Unlike))
	r.Get("/v1/counters/{name}/actors/{actor}", a.handleMember)
	r.Get("/v1/counters", a.handleMultiGet)
	r.Post("/v1/batch", a.handleBatch)
	r.Post("/v1/counters/{name}/split", a.handleSplit)
	r.Get("/v1/hot", a.handleHot)
	r.Get("/v1/changes", a.handleChanges)
	r.Get("/v1/changes/dump", a.handleDump)
}

// requireFormed answers 503 until the node has joined a formed cluster:
// before that it does not know the shard count, so it cannot place a
// counter on its shard.
func (a *api) requireFormed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !a.core.Formed() {
			writeError(w, http.StatusServiceUnavailable, "unavailable", "this node has not joined a formed cluster yet; nothing was applied", nil)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func requestsMetric(reg *prometheus.Registry) *prometheus.CounterVec {
	return register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tally_http_requests_total", Help: "HTTP requests by route and status code.",
	}, []string{"route", "code"}))
}

// latencyMetric is what a request's p99 is read from (the dashboard's
// per-node latency). A stream (a watch) is observed when it ends, so
// its route's quantiles measure how long clients watch, not latency.
func latencyMetric(reg *prometheus.Registry) *prometheus.HistogramVec {
	return register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "tally_http_request_duration_seconds",
		Help:    "Time from a request's routing to its handler's return, by route.",
		Buckets: []float64{0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1, 2, 5, 10},
	}, []string{"route"}))
}

// register registers c on reg once per registry: a second Handler over
// the same core reuses the first one's metric.
func register[C prometheus.Collector](reg *prometheus.Registry, c C) C {
	if err := reg.Register(c); err != nil {
		var dup prometheus.AlreadyRegisteredError
		if errors.As(err, &dup) {
			if old, ok := dup.ExistingCollector.(C); ok {
				return old
			}
		}
		panic(err) // a programming error: another metric of that name
	}
	return c
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

// Unwrap lets http.ResponseController reach the connection's writer
// (flushes and deadlines, for streams).
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (a *api) countRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		start := time.Now()
		next.ServeHTTP(sw, r)
		took := time.Since(start)
		route := chi.RouteContext(r.Context()).RoutePattern()
		if route == "" {
			route = "unmatched"
		}
		a.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
		a.latency.WithLabelValues(route).Observe(took.Seconds())
	})
}

package node

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tally/fsm"
	"tally/hot"
	"tally/placement"
)

const (
	maxBody       = 64 << 10
	maxMultiGet   = 1000
	retryAfterS   = "1"
	headerIdemKey = "Idempotency-Key"
)

func (n *Node) router() http.Handler {
	r := chi.NewRouter()
	r.Use(n.countRequests)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such route: "+r.Method+" "+r.URL.Path, nil)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", r.Method+" is not allowed on "+r.URL.Path, nil)
	})
	// Counter routes need the cluster's shard count, known once formed.
	r.Group(func(r chi.Router) {
		r.Use(n.requireFormed)
		n.counterRoutes(r)
	})
	r.Get("/v1/cluster", n.handleCluster)
	r.Get("/healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", n.handleReady)
	r.Handle("/metrics", promhttp.HandlerFor(n.metrics.reg, promhttp.HandlerOpts{}))
	n.faultRoutes(r) // only with --enable-faults
	if n.cfg.Pprof {
		r.Mount("/debug", middleware.Profiler())
	}
	return r
}

// requireFormed answers 503 until this node has joined a formed cluster:
// before that it does not know the shard count, so it cannot place a
// counter on its shard.
func (n *Node) requireFormed(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !n.formed.Load() {
			writeError(w, http.StatusServiceUnavailable, "unavailable", "this node has not joined a formed cluster yet; nothing was applied", nil)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (n *Node) counterRoutes(r chi.Router) {
	r.Post("/v1/counters/{name}/incr", n.handleAdd(1))
	r.Post("/v1/counters/{name}/decr", n.handleAdd(-1))
	r.Get("/v1/counters/{name}", n.handleGet)
	r.Put("/v1/counters/{name}/actors/{actor}", n.handleActor(fsm.OpActorAdd))
	r.Delete("/v1/counters/{name}/actors/{actor}", n.handleActor(fsm.OpActorRemove))
	r.Get("/v1/counters/{name}/actors/{actor}", n.handleMember)
	r.Get("/v1/counters", n.handleMultiGet)
	r.Post("/v1/batch", n.handleBatch)
	r.Post("/v1/counters/{name}/split", n.handleSplit)
	r.Get("/v1/hot", n.handleHot)
}

// --- errors and JSON ---

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Value   *int64 `json:"value,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error":{"code":"internal","message":"encoding the answer failed"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, code, msg string, value *int64) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", retryAfterS)
	}
	writeJSON(w, status, map[string]apiError{"error": {Code: code, Message: msg, Value: value}})
}

// writeClusterError answers a failed shard operation with what the client
// may conclude from it.
func writeClusterError(w http.ResponseWriter, err error) {
	e := clusterError(err)
	status := http.StatusServiceUnavailable
	if e.Code == "internal" {
		status = http.StatusInternalServerError
	}
	writeError(w, status, e.Code, e.Message, nil)
}

// --- validation ---

// validName checks DESIGN's rule: 1–256 bytes of printable UTF-8, no '/'.
func validName(s string) string {
	switch {
	case len(s) == 0:
		return "counter name is empty"
	case len(s) > fsm.MaxNameLen:
		return "counter name is longer than 256 bytes"
	case !utf8.ValidString(s):
		return "counter name is not valid UTF-8"
	}
	for _, r := range s {
		if r == '/' {
			return "counter name contains '/'"
		}
		if !unicode.IsPrint(r) {
			return "counter name contains a control or non-printable character"
		}
	}
	return ""
}

// nameParam returns the {name} path segment, unescaped. chi matches on the
// raw (escaped) path when the URL has one, so an encoded '/' (%2F) arrives
// escaped and is rejected after unescaping.
func nameParam(r *http.Request) (string, string) {
	raw := chi.URLParam(r, "name")
	if r.URL.RawPath != "" {
		s, err := url.PathUnescape(raw)
		if err != nil {
			return "", "counter name is not a valid escaped path segment"
		}
		raw = s
	}
	return raw, validName(raw)
}

func validKey(k string) bool {
	if len(k) == 0 || len(k) > fsm.MaxKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x21 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// addFields are the numeric fields of an add, as an incr/decr body or a
// batch op carries them; they stay raw so that "1.5", "5" (a string) or a
// number beyond int64 are refused, not rounded.
type addFields struct {
	Delta json.RawMessage `json:"delta"`
	Min   json.RawMessage `json:"min"`
	Max   json.RawMessage `json:"max"`
	TTLms json.RawMessage `json:"ttl_ms"`
}

const maxTTLms = 10 * 365 * 24 * 3600 * 1000 // ten years

// fill sets op's delta (default 1), bounds and TTL from f; a non-empty
// code is the 400 to answer.
func (f addFields) fill(op *fsm.Op) (code, msg string) {
	op.Delta = 1
	for _, x := range []struct {
		raw        json.RawMessage
		dst        *int64
		has        *bool
		code, what string
	}{
		{f.Delta, &op.Delta, nil, "bad_delta", "delta"},
		{f.Min, &op.Min, &op.HasMin, "bad_bounds", "min"},
		{f.Max, &op.Max, &op.HasMax, "bad_bounds", "max"},
		{f.TTLms, &op.TTL, nil, "bad_ttl", "ttl_ms"},
	} {
		if len(x.raw) == 0 {
			continue
		}
		v, err := strconv.ParseInt(string(x.raw), 10, 64)
		if err != nil {
			return x.code, x.what + " must be an integer between -9223372036854775808 and 9223372036854775807"
		}
		*x.dst = v
		if x.has != nil {
			*x.has = true
		}
	}
	switch {
	case op.HasMin && op.HasMax && op.Min > op.Max:
		return "bad_bounds", "min must not be greater than max"
	case len(f.TTLms) > 0 && (op.TTL <= 0 || op.TTL > maxTTLms):
		return "bad_ttl", "ttl_ms must be between 1 and 315360000000 (ten years)"
	}
	return "", ""
}

// parseAdd reads the optional {"delta", "min", "max", "ttl_ms"} body of
// incr/decr into op. An absent body or delta means 1.
func parseAdd(r *http.Request, op *fsm.Op) (code, msg string) {
	op.Delta = 1
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		return "bad_body", "request body too large or unreadable"
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return "", ""
	}
	var f addFields
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(&f); err != nil {
		return "bad_body", `body must be a JSON object like {"delta": 5, "min": 0, "max": 100, "ttl_ms": 60000}: ` + err.Error()
	}
	if _, err := d.Token(); err != io.EOF {
		return "bad_body", "unexpected data after the JSON object"
	}
	return f.fill(op)
}

// actorParam returns the {actor} path segment, unescaped and checked like
// a counter name but at most 128 bytes.
func actorParam(r *http.Request) (string, string) {
	raw := chi.URLParam(r, "actor")
	if r.URL.RawPath != "" {
		s, err := url.PathUnescape(raw)
		if err != nil {
			return "", "actor id is not a valid escaped path segment"
		}
		raw = s
	}
	if len(raw) > fsm.MaxActorLen {
		return "", "actor id is longer than 128 bytes"
	}
	if bad := validName(raw); bad != "" {
		return "", strings.Replace(bad, "counter name", "actor id", 1)
	}
	return raw, ""
}

// idempotencyKey returns the request's key ("" if none) or a 400 message.
func idempotencyKey(r *http.Request) (string, string) {
	keys := r.Header.Values(headerIdemKey)
	if len(keys) == 0 {
		return "", ""
	}
	if len(keys) > 1 || !validKey(keys[0]) {
		return "", "Idempotency-Key must be one header of 1–256 printable ASCII characters"
	}
	return keys[0], ""
}

// --- handlers ---

type addAnswer struct {
	Name      string  `json:"name"`
	Value     int64   `json:"value"`
	Exact     bool    `json:"exact"`
	ExpiresAt *string `json:"expires_at,omitempty"`
}

// expiresAt renders an expiry (Unix nanoseconds, 0 = none) for answers.
func expiresAt(ns int64) *string {
	if ns == 0 {
		return nil
	}
	s := time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000Z07:00")
	return &s
}

func (n *Node) handleAdd(sign int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, ok := requireName(w, r)
		if !ok {
			return
		}
		key, ok := requireKey(w, r)
		if !ok {
			return
		}
		op := fsm.Op{Kind: fsm.OpAdd, Name: name, Key: key}
		if code, msg := parseAdd(r, &op); code != "" {
			writeError(w, http.StatusBadRequest, code, msg, nil)
			return
		}
		if sign < 0 {
			if op.Delta == math.MinInt64 {
				writeError(w, http.StatusBadRequest, "bad_delta", "decr delta cannot be -9223372036854775808", nil)
				return
			}
			op.Delta = -op.Delta
		}
		o, ok := n.apply(w, r, op)
		if !ok {
			return
		}
		// A split counter's answer is the value of the sub-counter the op
		// landed on: a lower bound of the total (while it only grows).
		writeJSON(w, http.StatusOK, addAnswer{Name: name, Value: o.res.Value, Exact: o.split <= 1, ExpiresAt: expiresAt(o.res.ExpiresAt)})
	}
}

// apply runs one op on its counter's shard (or, for a split counter, a
// sub-counter's) and answers every failure; ok says the op applied and
// the caller should answer o.
func (n *Node) apply(w http.ResponseWriter, r *http.Request, op fsm.Op) (o outcome, ok bool) {
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	o = n.writeOps(ctx, []fsm.Op{op})[0]
	if o.err != nil {
		writeClusterError(w, o.err)
		return o, false
	}
	if o.res.Code == fsm.OK {
		return o, true
	}
	e := opResult(op.Name, o).Error
	writeError(w, codeStatus(o.res.Code), e.Code, e.Message, e.Value)
	return o, false
}

// codeStatus is the HTTP status of a refused op.
func codeStatus(c fsm.Code) int {
	switch c {
	case fsm.ErrOverflow, fsm.ErrOutOfBounds, fsm.ErrSplit, fsm.ErrSplitShrink, fsm.ErrNotSplittable:
		return http.StatusConflict
	case fsm.ErrKeyReused:
		return http.StatusUnprocessableEntity
	}
	return http.StatusInternalServerError
}

// handleActor likes (PUT) or unlikes (DELETE): the counter changes only
// if the actor's membership does.
func (n *Node) handleActor(kind fsm.OpKind) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, ok := requireName(w, r)
		if !ok {
			return
		}
		actor, ok := requireActor(w, r)
		if !ok {
			return
		}
		key, ok := requireKey(w, r)
		if !ok {
			return
		}
		o, ok := n.apply(w, r, fsm.Op{Kind: kind, Name: name, Actor: actor, Key: key})
		if !ok {
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Name    string `json:"name"`
			Value   int64  `json:"value"`
			Changed bool   `json:"changed"`
		}{name, o.res.Value, o.res.Changed})
	}
}

func (n *Node) handleMember(w http.ResponseWriter, r *http.Request) {
	name, ok := requireName(w, r)
	if !ok {
		return
	}
	actor, ok := requireActor(w, r)
	if !ok {
		return
	}
	linear, ok := requireConsistency(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	member, err := n.member(ctx, placement.Home(name, n.shardCount()), name, actor, linear)
	if err != nil {
		writeClusterError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"member": member})
}

// The require* helpers read one part of a request; when it is invalid they
// answer the 400 themselves and return ok=false.

func requireName(w http.ResponseWriter, r *http.Request) (string, bool) {
	name, bad := nameParam(r)
	if bad != "" {
		writeError(w, http.StatusBadRequest, "bad_name", bad, nil)
	}
	return name, bad == ""
}

func requireActor(w http.ResponseWriter, r *http.Request) (string, bool) {
	actor, bad := actorParam(r)
	if bad != "" {
		writeError(w, http.StatusBadRequest, "bad_actor", bad, nil)
	}
	return actor, bad == ""
}

func requireKey(w http.ResponseWriter, r *http.Request) (string, bool) {
	key, bad := idempotencyKey(r)
	if bad != "" {
		writeError(w, http.StatusBadRequest, "bad_key", bad, nil)
	}
	return key, bad == ""
}

func requireConsistency(w http.ResponseWriter, r *http.Request) (linear bool, ok bool) {
	switch r.URL.Query().Get("consistency") {
	case "", "linearizable":
		return true, true
	case "stale":
		return false, true
	}
	writeError(w, http.StatusBadRequest, "bad_consistency", "consistency must be linearizable or stale", nil)
	return false, false
}

func (n *Node) handleGet(w http.ResponseWriter, r *http.Request) {
	name, ok := requireName(w, r)
	if !ok {
		return
	}
	linear, ok := requireConsistency(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	vals, err := n.readCounters(ctx, []string{name}, linear)
	if err != nil {
		writeClusterError(w, err)
		return
	}
	c := vals[0]
	if c.overflow {
		writeError(w, http.StatusConflict, "overflow", "the sum of the counter's sub-counters does not fit in an int64", nil)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Name      string   `json:"name"`
		Value     int64    `json:"value"`
		Split     int      `json:"split"`
		Shards    []uint32 `json:"shards"`
		ExpiresAt *string  `json:"expires_at,omitempty"`
	}{name, c.value, c.split, shardsOf(name, c.split, n.shardCount()), expiresAt(c.expiresAt)})
}

type counterValue struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
}

func (n *Node) handleMultiGet(w http.ResponseWriter, r *http.Request) {
	names := r.URL.Query()["name"]
	if len(names) == 0 {
		writeError(w, http.StatusBadRequest, "bad_name", "give at least one ?name=", nil)
		return
	}
	if len(names) > maxMultiGet {
		writeError(w, http.StatusBadRequest, "too_many_names", "at most 1000 names per request", nil)
		return
	}
	for _, name := range names {
		if bad := validName(name); bad != "" {
			writeError(w, http.StatusBadRequest, "bad_name", bad+": "+strconv.Quote(name), nil)
			return
		}
	}
	linear, ok := requireConsistency(w, r)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	// One read per shard, all shards in parallel (readCounters).
	vals, err := n.readCounters(ctx, names, linear)
	if err != nil {
		writeClusterError(w, err)
		return
	}
	out := make([]counterValue, len(names))
	for i, c := range vals {
		if c.overflow {
			writeError(w, http.StatusConflict, "overflow", "the sum of the sub-counters of "+strconv.Quote(names[i])+" does not fit in an int64", nil)
			return
		}
		out[i] = counterValue{Name: names[i], Value: c.value}
	}
	writeJSON(w, http.StatusOK, map[string][]counterValue{"counters": out})
}

// handleSplit raises a counter's split factor (POST {"n": k}).
func (n *Node) handleSplit(w http.ResponseWriter, r *http.Request) {
	name, ok := requireName(w, r)
	if !ok {
		return
	}
	var body struct {
		N *int `json:"n"`
	}
	d := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 4096))
	d.DisallowUnknownFields()
	if err := d.Decode(&body); err != nil || body.N == nil {
		writeError(w, http.StatusBadRequest, "bad_body", `body must be {"n": <split factor>}`, nil)
		return
	}
	S := n.shardCount()
	k := *body.N
	if k < 1 || k > S {
		writeError(w, http.StatusBadRequest, "bad_split", fmt.Sprintf("n must be 1..%d (the shard count)", S), nil)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 2*n.cfg.RequestTimeout)
	defer cancel()
	from := n.splits.get(name)
	got, code := 1, fsm.OK
	var err error
	if k > 1 {
		got, code, err = n.splitCounter(ctx, name, k)
		n.splitLog.add(splitEvent{Name: name, From: from, To: k, Got: got, Reason: "manual", At: time.Now(), Err: errText(code, err)})
	} else {
		// n = 1 asks for no split: fine if there is none, a shrink if there is.
		var vals []counterRead
		vals, err = n.readCounters(ctx, []string{name}, true)
		if err == nil {
			got = vals[0].split
			if got > 1 {
				code = fsm.ErrSplitShrink
			}
		}
	}
	if err != nil {
		writeClusterError(w, err)
		return
	}
	switch code {
	case fsm.OK:
		writeJSON(w, http.StatusOK, map[string]any{"name": name, "split": got})
	case fsm.ErrSplitShrink:
		v := int64(got)
		writeError(w, http.StatusConflict, "split_shrink", fmt.Sprintf("the counter is split %d ways; a split factor can only grow", got), &v)
	case fsm.ErrNotSplittable:
		writeError(w, http.StatusConflict, "not_splittable", "a counter with an expiry (ttl_ms) cannot be split", nil)
	default:
		writeError(w, http.StatusInternalServerError, "internal", "unexpected result code "+code.String(), nil)
	}
}

// handleHot shows the write rates this node's shard leaders see and the
// splits it ran.
func (n *Node) handleHot(w http.ResponseWriter, r *http.Request) {
	ans := hotAnswer{
		Node: n.cfg.ID, AutoSplit: n.tracker != nil, Threshold: n.cfg.SplitThreshold,
		SustainS: n.cfg.SplitSustain.Seconds(), SplitTo: n.splitTarget(),
		Hot: []hot.Rate{}, Splits: n.splitLog.list(), Known: n.splits.all(),
	}
	if n.tracker != nil {
		ans.Hot = n.tracker.Top(10)
	}
	writeJSON(w, http.StatusOK, ans)
}

type memberAnswer struct {
	ID    string `json:"id"`
	HTTP  string `json:"http"`
	State string `json:"state"`
}

type shardAnswer struct {
	ID           uint32   `json:"id"`
	Leader       string   `json:"leader"`
	Replicas     []string `json:"replicas"`
	AppliedIndex *uint64  `json:"applied_index,omitempty"`
}

func (n *Node) handleCluster(w http.ResponseWriter, r *http.Request) {
	members := n.ms.snapshot()
	ans := struct {
		Node    string         `json:"node"`
		Members []memberAnswer `json:"members"`
		Shards  []shardAnswer  `json:"shards"`
	}{Node: n.cfg.ID, Members: []memberAnswer{}, Shards: []shardAnswer{}}
	for _, m := range members {
		ans.Members = append(ans.Members, memberAnswer{ID: m.ID, HTTP: m.HTTP, State: m.State})
	}
	for s := 0; s < n.shardCount(); s++ {
		id := uint32(s)
		sa := shardAnswer{ID: id, Replicas: []string{}}
		sa.Leader, _ = n.leaderOf(id)
		if sh := n.shard(id); sh != nil {
			idx := sh.AppliedIndex()
			sa.AppliedIndex = &idx
			if voters, err := sh.Voters(); err == nil {
				for v := range voters {
					sa.Replicas = append(sa.Replicas, v)
				}
			}
		} else {
			for _, m := range members {
				for _, h := range m.Hosted {
					if h == id {
						sa.Replicas = append(sa.Replicas, m.ID)
					}
				}
			}
		}
		sort.Strings(sa.Replicas)
		ans.Shards = append(ans.Shards, sa)
	}
	writeJSON(w, http.StatusOK, ans)
}

func (n *Node) handleReady(w http.ResponseWriter, r *http.Request) {
	if err, _ := n.formErr.Load().(error); err != nil {
		writeError(w, http.StatusServiceUnavailable, "not_ready", "cluster formation failed: "+err.Error(), nil)
		return
	}
	if !n.Ready() {
		writeError(w, http.StatusServiceUnavailable, "not_ready", "not every shard replica on this node has a leader yet", nil)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// --- metrics middleware ---

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (n *Node) countRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(sw, r)
		route := chi.RouteContext(r.Context()).RoutePattern()
		if route == "" {
			route = "unmatched"
		}
		n.metrics.requests.WithLabelValues(route, strconv.Itoa(sw.status)).Inc()
	})
}

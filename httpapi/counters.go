package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"tally/node"
)

const maxBody = 64 << 10

// addAnswer is the answer of incr and decr.
type addAnswer struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
	Exact bool   `json:"exact"`
	// Split is the counter's split factor as far as the write learned,
	// only when it is split: a client that routes by it sends the next
	// plain increments to a sub-counter's leader.
	Split     int     `json:"split,omitempty"`
	ExpiresAt *string `json:"expires_at,omitempty"`
}

// expiresAt renders an expiry (zero = none) for answers.
func expiresAt(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format("2006-01-02T15:04:05.000Z07:00")
	return &s
}

func (a *api) handleAdd(sign int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, ok := requireName(w, r)
		if !ok {
			return
		}
		key, ok := requireKey(w, r)
		if !ok {
			return
		}
		req := node.AddRequest{Name: name, IdempotencyKey: key}
		if code, msg := parseAdd(r, &req); code != "" {
			writeError(w, http.StatusBadRequest, code, msg, nil)
			return
		}
		if sign < 0 {
			if req.Delta == math.MinInt64 {
				writeError(w, http.StatusBadRequest, "bad_delta", "decr delta cannot be -9223372036854775808", nil)
				return
			}
			req.Delta = -req.Delta
		}
		res, err := a.core.Add(r.Context(), req)
		if err != nil {
			writeCoreError(w, err)
			return
		}
		// A split counter's answer is the value of the sub-counter the op
		// landed on: a lower bound of the total (while it only grows).
		ans := addAnswer{Name: name, Value: res.Value, Exact: res.Exact, ExpiresAt: expiresAt(res.ExpiresAt)}
		if res.Split > 1 {
			ans.Split = res.Split
		}
		writeJSON(w, http.StatusOK, ans)
	}
}

// handleActor likes (PUT) or unlikes (DELETE): the counter changes only
// if the actor's membership does.
func (a *api) handleActor(op func(ctx context.Context, req node.ActorRequest) (node.ActorResult, error)) http.HandlerFunc {
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
		res, err := op(r.Context(), node.ActorRequest{Name: name, Actor: actor, IdempotencyKey: key})
		if err != nil {
			writeCoreError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, struct {
			Name    string `json:"name"`
			Value   int64  `json:"value"`
			Changed bool   `json:"changed"`
		}{name, res.Value, res.Changed})
	}
}

func (a *api) handleMember(w http.ResponseWriter, r *http.Request) {
	name, ok := requireName(w, r)
	if !ok {
		return
	}
	actor, ok := requireActor(w, r)
	if !ok {
		return
	}
	c, ok := requireConsistency(w, r)
	if !ok {
		return
	}
	member, err := a.core.IsMember(r.Context(), node.MemberRequest{Name: name, Actor: actor, Consistency: c})
	if err != nil {
		writeCoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{"member": member})
}

func (a *api) handleGet(w http.ResponseWriter, r *http.Request) {
	name, ok := requireName(w, r)
	if !ok {
		return
	}
	c, ok := requireConsistency(w, r)
	if !ok {
		return
	}
	res, err := a.core.Read(r.Context(), node.ReadRequest{Name: name, Consistency: c})
	if err != nil {
		writeCoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Name      string   `json:"name"`
		Value     int64    `json:"value"`
		Split     int      `json:"split"`
		Shards    []uint32 `json:"shards"`
		ExpiresAt *string  `json:"expires_at,omitempty"`
	}{name, res.Value, res.Split, res.Shards, expiresAt(res.ExpiresAt)})
}

// handleDelete removes a counter, its sub-counters and its actor set. It
// is idempotent: deleting a missing counter answers deleted false.
func (a *api) handleDelete(w http.ResponseWriter, r *http.Request) {
	name, ok := requireName(w, r)
	if !ok {
		return
	}
	existed, err := a.core.Delete(r.Context(), name)
	if err != nil {
		writeCoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Name    string `json:"name"`
		Deleted bool   `json:"deleted"`
	}{name, existed})
}

type counterValue struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
}

func (a *api) handleMultiGet(w http.ResponseWriter, r *http.Request) {
	names := r.URL.Query()["name"]
	if len(names) == 0 {
		writeError(w, http.StatusBadRequest, "bad_name", "give at least one ?name=", nil)
		return
	}
	if len(names) > node.MaxReadMany {
		writeError(w, http.StatusBadRequest, "too_many_names", fmt.Sprintf("at most %d names per request", node.MaxReadMany), nil)
		return
	}
	for _, name := range names {
		if bad := node.ValidName(name); bad != "" {
			writeError(w, http.StatusBadRequest, "bad_name", bad+": "+strconv.Quote(name), nil)
			return
		}
	}
	c, ok := requireConsistency(w, r)
	if !ok {
		return
	}
	vals, err := a.core.ReadMany(r.Context(), names, c)
	if err != nil {
		writeCoreError(w, err)
		return
	}
	out := make([]counterValue, len(vals))
	for i, v := range vals {
		out[i] = counterValue{Name: v.Name, Value: v.Value}
	}
	writeJSON(w, http.StatusOK, map[string][]counterValue{"counters": out})
}

// handleSplit raises a counter's split factor (POST {"n": k}).
func (a *api) handleSplit(w http.ResponseWriter, r *http.Request) {
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
	if S := a.core.ShardCount(); *body.N < 1 || *body.N > S {
		writeError(w, http.StatusBadRequest, "bad_split", fmt.Sprintf("n must be 1..%d (the shard count)", S), nil)
		return
	}
	res, err := a.core.Split(r.Context(), node.SplitRequest{Name: name, Factor: *body.N})
	if err != nil {
		writeCoreError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"name": name, "split": res.Factor})
}

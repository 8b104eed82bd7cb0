package node

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	"tally/fsm"
	"tally/shard"
)

const maxBatchOps = 1000

// batchOp is one op of POST /v1/batch. Numbers stay raw so they are
// checked exactly like incr's body.
type batchOp struct {
	Name           string `json:"name"`
	IdempotencyKey string `json:"idempotency_key"`
	addFields
}

type batchResult struct {
	Name      string    `json:"name,omitempty"`
	Value     *int64    `json:"value,omitempty"`
	Exact     *bool     `json:"exact,omitempty"`
	ExpiresAt *string   `json:"expires_at,omitempty"`
	Error     *apiError `json:"error,omitempty"`
}

// handleBatch applies many increments in one request. The ops of one
// shard travel together into one raft entry; each op is applied exactly
// once (or, with its own idempotency key, safely retried) and answered in
// order. A malformed op rejects the whole request before anything applies.
func (n *Node) handleBatch(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, 4<<20))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "bad_body", "batch body too large (4 MiB at most)", nil)
		return
	}
	var req struct {
		Ops []batchOp `json:"ops"`
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.DisallowUnknownFields()
	if err := d.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_body", `body must be {"ops":[{"name","delta","idempotency_key"},...]}: `+err.Error(), nil)
		return
	}
	if _, err := d.Token(); err != io.EOF {
		writeError(w, http.StatusBadRequest, "bad_body", "unexpected data after the JSON object", nil)
		return
	}
	if len(req.Ops) == 0 {
		writeError(w, http.StatusBadRequest, "bad_body", "a batch needs at least one op", nil)
		return
	}
	if len(req.Ops) > maxBatchOps {
		writeError(w, http.StatusBadRequest, "too_many_ops", fmt.Sprintf("at most %d ops per batch, got %d", maxBatchOps, len(req.Ops)), nil)
		return
	}
	ops := make([]fsm.Op, len(req.Ops))
	for i, bo := range req.Ops {
		op, code, msg := parseBatchOp(bo)
		if code != "" {
			writeError(w, http.StatusBadRequest, code, fmt.Sprintf("op %d: %s", i, msg), nil)
			return
		}
		ops[i] = op
	}

	ctx, cancel := context.WithTimeout(r.Context(), n.cfg.RequestTimeout)
	defer cancel()
	out := make([]batchResult, len(ops))
	for i, o := range n.writeOps(ctx, ops) {
		if o.err != nil {
			out[i] = batchResult{Name: ops[i].Name, Error: clusterError(o.err)}
			continue
		}
		out[i] = opResult(ops[i].Name, o)
	}
	writeJSON(w, http.StatusOK, map[string][]batchResult{"results": out})
}

func parseBatchOp(bo batchOp) (fsm.Op, string, string) {
	if bad := validName(bo.Name); bad != "" {
		return fsm.Op{}, "bad_name", bad
	}
	if bo.IdempotencyKey != "" && !validKey(bo.IdempotencyKey) {
		return fsm.Op{}, "bad_key", "idempotency_key must be 1–256 printable ASCII characters"
	}
	op := fsm.Op{Kind: fsm.OpAdd, Name: bo.Name, Key: bo.IdempotencyKey}
	code, msg := bo.fill(&op)
	return op, code, msg
}

// opResult renders one applied (or refused) op of a batch.
func opResult(name string, o outcome) batchResult {
	res := o.res
	v := res.Value
	switch res.Code {
	case fsm.OK:
		exact := o.split <= 1
		return batchResult{Name: name, Value: &v, Exact: &exact, ExpiresAt: expiresAt(res.ExpiresAt)}
	case fsm.ErrOverflow:
		return batchResult{Name: name, Error: &apiError{Code: "overflow", Message: "the result would overflow int64; nothing changed", Value: &v}}
	case fsm.ErrOutOfBounds:
		return batchResult{Name: name, Error: &apiError{Code: "out_of_bounds", Message: "the result would leave the counter outside its min/max; nothing changed", Value: &v}}
	case fsm.ErrKeyReused:
		return batchResult{Name: name, Error: &apiError{Code: "key_reused", Message: "this idempotency key was already used for a different operation"}}
	case fsm.ErrSplit:
		return batchResult{Name: name, Error: &apiError{Code: "counter_split", Message: "the counter is split across shards: bounds (min/max) and ttl_ms need an unsplit counter; nothing changed"}}
	default:
		return batchResult{Name: name, Error: &apiError{Code: "internal", Message: "unexpected result code " + res.Code.String()}}
	}
}

// clusterError is writeClusterError's answer as a value, for one op of a
// batch.
func clusterError(err error) *apiError {
	switch {
	case errors.Is(err, shard.ErrOutcomeUnknown):
		return &apiError{Code: "outcome_unknown", Message: "the op may or may not have been applied; retry it with the same idempotency_key"}
	case errors.Is(err, errSplitting):
		return &apiError{Code: "unavailable", Message: "the counter is being split right now; nothing was applied, retry shortly"}
	case errors.Is(err, errNoLeader):
		return &apiError{Code: "no_leader", Message: "the counter's shard has no leader right now; nothing was applied"}
	case errors.Is(err, shard.ErrUnavailable), errors.Is(err, shard.ErrClosed):
		return &apiError{Code: "unavailable", Message: "the counter's shard is unavailable; nothing was applied"}
	default:
		return &apiError{Code: "internal", Message: err.Error()}
	}
}

package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"

	"tally/node"
)

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
func (a *api) handleBatch(w http.ResponseWriter, r *http.Request) {
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
	if len(req.Ops) > node.MaxBatchOps {
		writeError(w, http.StatusBadRequest, "too_many_ops", fmt.Sprintf("at most %d ops per batch, got %d", node.MaxBatchOps, len(req.Ops)), nil)
		return
	}
	adds := make([]node.AddRequest, len(req.Ops))
	for i, bo := range req.Ops {
		add, code, msg := parseBatchOp(bo)
		if code != "" {
			writeError(w, http.StatusBadRequest, code, fmt.Sprintf("op %d: %s", i, msg), nil)
			return
		}
		adds[i] = add
	}
	outcomes, err := a.core.AddBatch(r.Context(), adds)
	if err != nil {
		writeCoreError(w, err)
		return
	}
	out := make([]batchResult, len(outcomes))
	for i, o := range outcomes {
		name := adds[i].Name
		if o.Err != nil {
			out[i] = batchResult{Name: name, Error: toAPIError(o.Err)}
			continue
		}
		v, exact := o.Result.Value, o.Result.Exact
		out[i] = batchResult{Name: name, Value: &v, Exact: &exact, ExpiresAt: expiresAt(o.Result.ExpiresAt)}
	}
	writeJSON(w, http.StatusOK, map[string][]batchResult{"results": out})
}

func parseBatchOp(bo batchOp) (node.AddRequest, string, string) {
	if bad := node.ValidName(bo.Name); bad != "" {
		return node.AddRequest{}, "bad_name", bad
	}
	if bo.IdempotencyKey != "" && !node.ValidKey(bo.IdempotencyKey) {
		return node.AddRequest{}, "bad_key", "idempotency_key must be 1–256 printable ASCII characters"
	}
	req := node.AddRequest{Name: bo.Name, IdempotencyKey: bo.IdempotencyKey}
	code, msg := bo.fill(&req)
	return req, code, msg
}

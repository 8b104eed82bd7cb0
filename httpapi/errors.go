package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"

	"tally/node"
)

const retryAfterS = "1"

// apiError is the JSON error body: {"error":{"code","message","value"}}.
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

// writeCoreError answers a failed operation of the core with its status.
func writeCoreError(w http.ResponseWriter, err error) {
	e := asCoreError(err)
	ae := toAPIError(e)
	writeError(w, status(e.Code), ae.Code, ae.Message, ae.Value)
}

// asCoreError returns err as the core's *node.Error (every operation
// fails with one; anything else is internal).
func asCoreError(err error) *node.Error {
	var e *node.Error
	if errors.As(err, &e) {
		return e
	}
	return &node.Error{Code: node.CodeInternal, Message: err.Error()}
}

func toAPIError(e *node.Error) *apiError {
	ae := &apiError{Code: string(e.Code), Message: e.Message}
	if e.HasValue {
		v := e.Value
		ae.Value = &v
	}
	return ae
}

// status is the HTTP status of a failure code: 400 bad input, 409 refused
// by the counter's state, 422 an idempotency key reused for another op,
// 503 not applied or outcome unknown (both retryable), 500 otherwise.
func status(c node.Code) int {
	switch {
	case c.BadInput():
		return http.StatusBadRequest
	}
	switch c {
	case node.CodeOverflow, node.CodeOutOfBounds, node.CodeCounterSplit, node.CodeNotSplittable, node.CodeSplitShrink:
		return http.StatusConflict
	case node.CodeKeyReused:
		return http.StatusUnprocessableEntity
	case node.CodeUnknownNode:
		return http.StatusNotFound
	case node.CodeMembershipRefused:
		return http.StatusConflict
	case node.CodeNoLeader, node.CodeUnavailable, node.CodeOutcomeUnknown, node.CodeKeysFull:
		return http.StatusServiceUnavailable
	case node.CodeCursorExpired:
		return http.StatusGone
	case node.CodeChangesOff:
		return http.StatusNotImplemented
	}
	return http.StatusInternalServerError
}

package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"tally/node"
)

const headerIdemKey = "Idempotency-Key"

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
	return raw, node.ValidName(raw)
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
	if bad := node.ValidActor(raw); bad != "" {
		return "", bad
	}
	return raw, ""
}

// idempotencyKey returns the request's key ("" if none) or a 400 message.
func idempotencyKey(r *http.Request) (string, string) {
	keys := r.Header.Values(headerIdemKey)
	if len(keys) == 0 {
		return "", ""
	}
	if len(keys) > 1 || !node.ValidKey(keys[0]) {
		return "", "Idempotency-Key must be one header of 1–256 printable ASCII characters"
	}
	return keys[0], ""
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

func requireConsistency(w http.ResponseWriter, r *http.Request) (node.Consistency, bool) {
	switch r.URL.Query().Get("consistency") {
	case "", "linearizable":
		return node.Linearizable, true
	case "stale":
		return node.Stale, true
	}
	writeError(w, http.StatusBadRequest, "bad_consistency", "consistency must be linearizable or stale", nil)
	return 0, false
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

// fill sets req's delta (default 1), bounds and TTL from f; a non-empty
// code is the 400 to answer.
func (f addFields) fill(req *node.AddRequest) (code, msg string) {
	req.Delta = 1
	var ttl int64
	for _, x := range []struct {
		raw        json.RawMessage
		dst        *int64
		has        *bool
		code, what string
	}{
		{f.Delta, &req.Delta, nil, "bad_delta", "delta"},
		{f.Min, &req.Min, &req.HasMin, "bad_bounds", "min"},
		{f.Max, &req.Max, &req.HasMax, "bad_bounds", "max"},
		{f.TTLms, &ttl, nil, "bad_ttl", "ttl_ms"},
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
	case req.HasMin && req.HasMax && req.Min > req.Max:
		return "bad_bounds", "min must not be greater than max"
	case len(f.TTLms) > 0 && (ttl <= 0 || ttl > maxTTLms):
		return "bad_ttl", "ttl_ms must be between 1 and 315360000000 (ten years)"
	}
	req.TTL = time.Duration(ttl) * time.Millisecond
	return "", ""
}

// parseAdd reads the optional {"delta", "min", "max", "ttl_ms"} body of
// incr/decr into req. An absent body or delta means 1.
func parseAdd(r *http.Request, req *node.AddRequest) (code, msg string) {
	req.Delta = 1
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
	return f.fill(req)
}

// Package memserver answers tally's counter API from a map in memory,
// with no replication and no disk: driven by the same client as tally, it
// measures what HTTP and JSON alone cost on a machine, the ceiling any
// HTTP counter service there can reach.
package memserver

import (
	"encoding/json"
	"net/http"
	"sync"
)

// Server holds the counters.
type Server struct {
	mu   sync.Mutex
	vals map[string]int64
}

// New returns an empty server.
func New() *Server { return &Server{vals: map[string]int64{}} }

// Handler serves the calls the load generator makes, with tally's JSON
// shapes: incr, batch, get and multi-get.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/counters/{name}/incr", s.incr)
	mux.HandleFunc("POST /v1/batch", s.batch)
	mux.HandleFunc("GET /v1/counters/{name}", s.get)
	mux.HandleFunc("GET /v1/counters", s.multiGet)
	return mux
}

type answer struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
	Exact bool   `json:"exact"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func badBody(w http.ResponseWriter, err error) {
	writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"code": "bad_body", "message": err.Error()}})
}

func (s *Server) add(name string, delta int64) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.vals[name] += delta
	return s.vals[name]
}

func (s *Server) incr(w http.ResponseWriter, r *http.Request) {
	body := struct {
		Delta *int64 `json:"delta"`
	}{}
	// Like tally, an empty body means delta 1.
	if r.ContentLength != 0 {
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			badBody(w, err)
			return
		}
	}
	delta := int64(1)
	if body.Delta != nil {
		delta = *body.Delta
	}
	name := r.PathValue("name")
	writeJSON(w, http.StatusOK, answer{Name: name, Value: s.add(name, delta), Exact: true})
}

func (s *Server) batch(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Ops []struct {
			Name  string `json:"name"`
			Delta *int64 `json:"delta"`
		} `json:"ops"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		badBody(w, err)
		return
	}
	out := make([]answer, len(req.Ops))
	s.mu.Lock()
	for i, op := range req.Ops {
		d := int64(1)
		if op.Delta != nil {
			d = *op.Delta
		}
		s.vals[op.Name] += d
		out[i] = answer{Name: op.Name, Value: s.vals[op.Name], Exact: true}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string][]answer{"results": out})
}

type value struct {
	Name  string `json:"name"`
	Value int64  `json:"value"`
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	s.mu.Lock()
	v := s.vals[name]
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, value{Name: name, Value: v})
}

func (s *Server) multiGet(w http.ResponseWriter, r *http.Request) {
	names := r.URL.Query()["name"]
	out := make([]value, len(names))
	s.mu.Lock()
	for i, n := range names {
		out[i] = value{Name: n, Value: s.vals[n]}
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string][]value{"counters": out})
}

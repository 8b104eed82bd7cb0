package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"
)

// Test-only endpoints, mounted only with --enable-faults (404 otherwise):
//
//	GET  /v1/faults         {"node","raft","blocked":[raft addrs]}
//	POST /v1/faults         {"block":[raft addrs]} or {"unblock":[...]} or {"heal":true}
//	GET  /v1/debug/shards   each local replica's applied index and state digest
//
// The fault switch cuts this node's cluster transport (raft and forwarding)
// from the given peers in both directions, so a chaos test can isolate a
// node without root. Gossip is left alone: it only routes.
func (a *api) faultRoutes(r chi.Router) {
	r.Get("/v1/faults", a.handleFaultsGet)
	r.Post("/v1/faults", a.handleFaultsPost)
	r.Get("/v1/debug/shards", a.handleDebugShards)
}

type faultsAnswer struct {
	Node    string   `json:"node"`
	Raft    string   `json:"raft"`
	Blocked []string `json:"blocked"`
}

func (a *api) faultsAnswer() faultsAnswer {
	return faultsAnswer{Node: a.core.ID(), Raft: a.core.RaftAddr(), Blocked: a.core.Faults().Blocked()}
}

func (a *api) handleFaultsGet(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.faultsAnswer())
}

// faultsRequest is one change; exactly one field is set.
type faultsRequest struct {
	Block   []string `json:"block"`
	Unblock []string `json:"unblock"`
	Heal    bool     `json:"heal"`
}

func (a *api) handleFaultsPost(w http.ResponseWriter, r *http.Request) {
	var req faultsRequest
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "bad_body", "want {\"block\":[addrs]}, {\"unblock\":[addrs]} or {\"heal\":true}: "+err.Error(), nil)
		return
	}
	set := 0
	for _, b := range []bool{req.Block != nil, req.Unblock != nil, req.Heal} {
		if b {
			set++
		}
	}
	if set != 1 {
		writeError(w, http.StatusBadRequest, "bad_body", "give exactly one of block, unblock or heal:true", nil)
		return
	}
	if err := checkPeers(append(req.Block, req.Unblock...), a.core.RaftAddr()); err != nil {
		writeError(w, http.StatusBadRequest, "bad_peer", err.Error(), nil)
		return
	}
	f := a.core.Faults()
	switch {
	case req.Heal:
		f.Heal()
	case req.Block != nil:
		f.Block(req.Block...)
	default:
		f.Unblock(req.Unblock...)
	}
	writeJSON(w, http.StatusOK, a.faultsAnswer())
}

// checkPeers accepts host:port cluster addresses other than our own (a
// node cannot be cut off from itself; asking for it is a mistake).
func checkPeers(peers []string, self string) error {
	for _, p := range peers {
		i := strings.LastIndexByte(p, ':')
		if p == "" || len(p) > 256 || i <= 0 || i == len(p)-1 || strings.ContainsAny(p, " /") {
			return errors.New("peer " + quote(p) + " is not a host:port cluster address")
		}
		if p == self {
			return errors.New("peer " + quote(p) + " is this node's own address")
		}
	}
	return nil
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// debugShard is one local replica in /v1/debug/shards.
type debugShard struct {
	ID           uint32 `json:"id"`
	Leader       bool   `json:"leader"`
	AppliedIndex uint64 `json:"applied_index"`
	Digest       string `json:"digest"`
	Counters     int    `json:"counters"`
	// SnapshotIndex is the replica's latest snapshot: a replica that has
	// applied less than it minus the trailing logs needs a snapshot install.
	SnapshotIndex uint64 `json:"snapshot_index"`
}

func (a *api) handleDebugShards(w http.ResponseWriter, r *http.Request) {
	ans := struct {
		Node   string       `json:"node"`
		Shards []debugShard `json:"shards"`
	}{Node: a.core.ID(), Shards: []debugShard{}}
	for _, d := range a.core.ShardDigests() {
		ans.Shards = append(ans.Shards, debugShard{ID: d.ID, Leader: d.Leader, AppliedIndex: d.AppliedIndex, Digest: d.Digest, Counters: d.Counters, SnapshotIndex: d.SnapshotIndex})
	}
	writeJSON(w, http.StatusOK, ans)
}

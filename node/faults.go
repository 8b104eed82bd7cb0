package node

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"sort"
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
func (n *Node) faultRoutes(r chi.Router) {
	if !n.cfg.EnableFaults {
		return
	}
	r.Get("/v1/faults", n.handleFaultsGet)
	r.Post("/v1/faults", n.handleFaultsPost)
	r.Get("/v1/debug/shards", n.handleDebugShards)
}

type faultsAnswer struct {
	Node    string   `json:"node"`
	Raft    string   `json:"raft"`
	Blocked []string `json:"blocked"`
}

func (n *Node) faultsAnswer() faultsAnswer {
	return faultsAnswer{Node: n.cfg.ID, Raft: n.RaftAddr(), Blocked: n.Faults().Blocked()}
}

func (n *Node) handleFaultsGet(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.faultsAnswer())
}

// faultsRequest is one change; exactly one field is set.
type faultsRequest struct {
	Block   []string `json:"block"`
	Unblock []string `json:"unblock"`
	Heal    bool     `json:"heal"`
}

func (n *Node) handleFaultsPost(w http.ResponseWriter, r *http.Request) {
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
	if err := checkPeers(append(req.Block, req.Unblock...), n.RaftAddr()); err != nil {
		writeError(w, http.StatusBadRequest, "bad_peer", err.Error(), nil)
		return
	}
	f := n.Faults()
	switch {
	case req.Heal:
		f.Heal()
	case req.Block != nil:
		f.Block(req.Block...)
	default:
		f.Unblock(req.Unblock...)
	}
	writeJSON(w, http.StatusOK, n.faultsAnswer())
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

func (n *Node) handleDebugShards(w http.ResponseWriter, r *http.Request) {
	ans := struct {
		Node   string       `json:"node"`
		Shards []debugShard `json:"shards"`
	}{Node: n.cfg.ID, Shards: []debugShard{}}
	for s := 0; s < n.shardCount(); s++ {
		sh := n.shard(uint32(s))
		if sh == nil {
			continue
		}
		idx, digest, counters := sh.Digest()
		ans.Shards = append(ans.Shards, debugShard{ID: uint32(s), Leader: sh.IsLeader(), AppliedIndex: idx, Digest: digest, Counters: counters, SnapshotIndex: sh.LastSnapshotIndex()})
	}
	sort.Slice(ans.Shards, func(i, j int) bool { return ans.Shards[i].ID < ans.Shards[j].ID })
	writeJSON(w, http.StatusOK, ans)
}

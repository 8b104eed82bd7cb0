package httpapi

import (
	"context"
	"net/http"

	"github.com/go-chi/chi/v5"

	"tally/node"
	"tally/placement"
)

// memberAnswer is a member: State is its place in the cluster (active,
// leaving, left, removed; "" when the node records could not be read),
// Health what gossip says of it (alive, suspect, dead, left).
type memberAnswer struct {
	ID     string `json:"id"`
	HTTP   string `json:"http"`
	State  string `json:"state"`
	Health string `json:"health"`
}

// shardAnswer is a shard: Replicas are its voters, Learners the replicas
// catching up before they vote.
type shardAnswer struct {
	ID           uint32   `json:"id"`
	Leader       string   `json:"leader"`
	Replicas     []string `json:"replicas"`
	Learners     []string `json:"learners"`
	AppliedIndex *uint64  `json:"applied_index,omitempty"`
}

// keyPlacement is how the cluster maps counter names to shards: with it
// (and the placement package) a client computes a name's home shard and
// sends the op straight to that shard's leader.
type keyPlacement struct {
	Scheme placement.Scheme `json:"scheme"`
	Shards int              `json:"shards"`
}

func (a *api) handleCluster(w http.ResponseWriter, r *http.Request) {
	st := a.core.ClusterDetail(r.Context())
	keys := a.core.KeyPlacement()
	ans := struct {
		Node         string         `json:"node"`
		KeyPlacement keyPlacement   `json:"key_placement"`
		Members      []memberAnswer `json:"members"`
		Shards       []shardAnswer  `json:"shards"`
	}{Node: st.Node, KeyPlacement: keyPlacement{Scheme: keys.Scheme, Shards: keys.Shards},
		Members: []memberAnswer{}, Shards: []shardAnswer{}}
	for _, m := range st.Members {
		ans.Members = append(ans.Members, memberAnswer{ID: m.ID, HTTP: m.HTTP, State: m.Node, Health: m.State})
	}
	for _, s := range st.Shards {
		sa := shardAnswer{ID: s.ID, Leader: s.Leader, Replicas: s.Replicas, Learners: s.Learners}
		if sa.Learners == nil {
			sa.Learners = []string{}
		}
		if s.HasAppliedIndex {
			idx := s.AppliedIndex
			sa.AppliedIndex = &idx
		}
		ans.Shards = append(ans.Shards, sa)
	}
	writeJSON(w, http.StatusOK, ans)
}

// handleNodeChange serves decommission and removal: the node's new state.
func (a *api) handleNodeChange(op func(ctx context.Context, id string) (node.NodeChange, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id := chi.URLParam(r, "id")
		if id == "" {
			writeError(w, http.StatusBadRequest, "bad_node", "the node id is empty", nil)
			return
		}
		ch, err := op(r.Context(), id)
		if err != nil {
			writeCoreError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"id": ch.ID, "state": ch.State.String()})
	}
}

func (a *api) handleReady(w http.ResponseWriter, r *http.Request) {
	if err := a.core.FormationError(); err != nil {
		writeError(w, http.StatusServiceUnavailable, "not_ready", "cluster formation failed: "+err.Error(), nil)
		return
	}
	if !a.core.Ready() {
		writeError(w, http.StatusServiceUnavailable, "not_ready", "not every shard replica on this node has a leader yet", nil)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// handleHot shows the write rates this node's shard leaders see and the
// splits it ran.
func (a *api) handleHot(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.core.HotReport())
}

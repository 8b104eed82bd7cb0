package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// An incarnation names one life of a node's data dir: a random id written
// into the dir the first time a node starts on it. Raft's safety rests on
// a replica remembering its term and vote; a node whose disk was wiped or
// replaced has forgotten both, and if it came back as the old replica it
// could vote a second time in a term it already voted in. Every member
// records the incarnation of each node the cluster was formed with
// (clusterState.Incarnations), so a node that starts on an empty dir asks
// a member which incarnation the cluster knows under its id, and refuses
// to take part when it is another one.

// ErrReplicaReplaced is why a node with an empty data dir refuses to join
// a cluster that knows its id as a replica with another data dir.
var ErrReplicaReplaced = errors.New("this node's data dir is not the one the cluster knows under its id")

func incarnationPath(dataDir string) string { return filepath.Join(dataDir, "incarnation") }

// loadIncarnation returns the data dir's incarnation, creating it (durably)
// on first start.
func loadIncarnation(dataDir string) (string, error) {
	b, err := os.ReadFile(incarnationPath(dataDir))
	if err == nil {
		inc := strings.TrimSpace(string(b))
		if inc == "" {
			return "", fmt.Errorf("%s is empty", incarnationPath(dataDir))
		}
		return inc, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", err
	}
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	inc := hex.EncodeToString(r[:])
	if err := writeFileDurably(dataDir, "incarnation", []byte(inc+"\n")); err != nil {
		return "", err
	}
	return inc, nil
}

// checkIncarnation asks the formed member m which incarnation it knows for
// this node. It returns ErrReplicaReplaced (wrapped, with what to do) when
// that is another one; nil when it is this one or none is known (a
// cluster formed before incarnations were recorded).
func (n *Node) checkIncarnation(m member) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	known, err := n.fwd.Replica(ctx, m.Raft, n.cfg.ID)
	if err != nil {
		return fmt.Errorf("asking %s which data dir it knows for this node: %w", m.ID, err)
	}
	if known == "" || known == n.incarnation {
		return nil
	}
	return fmt.Errorf("%w: member %s knows node %s as a replica with data dir incarnation %s, and %s is a new one (%s); "+
		"a replica that lost its disk must not rejoin as the old one, it could vote twice in one raft term. "+
		"Restore the old data dir, or start this node with a new --id (it joins as a new member)",
		ErrReplicaReplaced, m.ID, n.cfg.ID, known, n.cfg.DataDir, n.incarnation)
}

// recordIncarnations fills in the incarnations missing from the cluster
// state (a cluster formed before they were recorded) from the members'
// gossip, until every member the cluster was formed with is known.
func (n *Node) recordIncarnations() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if n.learnIncarnations() {
			return
		}
		select {
		case <-n.stop:
			return
		case <-tick.C:
		}
	}
}

// learnIncarnations records what gossip tells of the members whose
// incarnation is unknown; it reports whether all are known now.
func (n *Node) learnIncarnations() bool {
	seen := map[string]string{}
	for _, m := range n.ms.snapshot() {
		if m.State == "alive" && m.Incarnation != "" {
			seen[m.ID] = m.Incarnation
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.state
	changed, done := false, true
	for _, id := range st.Members {
		if st.Incarnations[id] != "" {
			continue
		}
		inc, ok := seen[id]
		if !ok {
			done = false
			continue
		}
		if st.Incarnations == nil {
			st.Incarnations = map[string]string{}
		}
		st.Incarnations[id] = inc
		changed = true
	}
	if changed {
		if err := saveState(n.cfg.DataDir, st); err != nil {
			n.log.Warn("saving learnt incarnations", "err", err)
			return false
		}
	}
	return done
}

// replicaIncarnation is the incarnation the cluster knows for id: the
// cluster state's for a member it was formed with (answered without a
// quorum, so members that are still forming can ask each other), else the
// node records' for a node that joined later ("" for one never given a
// replica).
func (n *Node) replicaIncarnation(ctx context.Context, id string) (string, error) {
	if inc := n.knownIncarnation(id); inc != "" || !n.formed.Load() {
		return inc, nil
	}
	_, incs, err := n.nodeRecords(ctx, []string{id})
	if err != nil {
		return "", err
	}
	return incs[id], nil
}

// knownIncarnation is the incarnation the cluster state records for id.
func (n *Node) knownIncarnation(id string) string {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.state == nil {
		return ""
	}
	return n.state.Incarnations[id]
}

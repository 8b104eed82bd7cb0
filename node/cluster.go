package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"time"

	"tally/placement"
)

// clusterState is what a node remembers about the cluster it belongs to,
// in <data-dir>/cluster.json. Its presence means "bootstrap is done": a
// restarted node reopens its shards from disk and never bootstraps again.
type clusterState struct {
	Shards    int               `json:"shards"`
	Replicas  int               `json:"replicas"`
	Members   []string          `json:"members"`   // the nodes the cluster was formed with
	Placement [][]string        `json:"placement"` // shard → replica node ids
	Addrs     map[string]string `json:"addrs"`     // node id → cluster (raft) address at bootstrap
	// Keys is how counter names map to shards. A file without it is from
	// a cluster formed before slots: placement.FNV.
	Keys placement.Scheme `json:"key_placement,omitempty"`
	// Incarnations is each member's data dir incarnation (incarnation.go),
	// recorded at formation or, for a cluster formed before they were,
	// learnt from gossip afterwards.
	Incarnations map[string]string `json:"incarnations,omitempty"`
	// Hosted lists the shards this node holds a replica of, kept as the
	// coordinator adds and removes replicas (replicas.go). A file without
	// it is from before replicas moved: Placement says then.
	Hosted []uint32 `json:"hosted"`
	// Bootstrapped: the shards this node was to bootstrap at formation
	// are bootstrapped. From then on a replica without state is one a
	// leader is filling, never one to bootstrap.
	Bootstrapped bool `json:"bootstrapped,omitempty"`
}

// hostedFrom fills in Hosted for a file without it.
func (c *clusterState) hostedFrom(id string) {
	if c.Hosted != nil {
		return
	}
	c.Hosted = []uint32{}
	for s := range c.Shards {
		if slices.Contains(c.Placement[s], id) {
			c.Hosted = append(c.Hosted, uint32(s))
		}
	}
}

func statePath(dataDir string) string { return filepath.Join(dataDir, "cluster.json") }

func loadState(dataDir string) (*clusterState, error) {
	b, err := os.ReadFile(statePath(dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var c clusterState
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", statePath(dataDir), err)
	}
	if c.Shards <= 0 || len(c.Placement) != c.Shards {
		return nil, fmt.Errorf("%s: inconsistent cluster state", statePath(dataDir))
	}
	if c.Keys == "" {
		c.Keys = placement.FNV
	}
	if _, err := placement.ParseScheme(string(c.Keys)); err != nil {
		return nil, fmt.Errorf("%s: %w; it was written by a newer tallyd, which this data dir needs", statePath(dataDir), err)
	}
	return &c, nil
}

// saveState writes the file durably.
func saveState(dataDir string, c *clusterState) error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return err
	}
	return writeFileDurably(dataDir, "cluster.json", b)
}

// writeFileDurably replaces dir/name with b: temp file, fsync, rename,
// fsync dir.
func writeFileDurably(dir, name string, b []byte) error {
	path := filepath.Join(dir, name)
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func allPresent(ids []string, byID map[string]member) bool {
	for _, id := range ids {
		if _, ok := byID[id]; !ok {
			return false
		}
	}
	return true
}

// awaitFormation decides this node's place in the cluster on first start:
// once --bootstrap-expect members (this one included) are visible, every
// one of them computes the same placement from the same sorted ids. A node
// that finds an already formed cluster joins it without hosting shards.
func (n *Node) awaitFormation(stop <-chan struct{}) (*clusterState, error) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	lastLog := time.Time{}
	verified := map[string]bool{} // members that know this node's incarnation, or none
	for {
		members := n.ms.snapshot()
		var alive []member
		for _, m := range members {
			if m.State == "alive" {
				alive = append(alive, m)
			}
		}
		byID := map[string]member{}
		for _, m := range alive {
			byID[m.ID] = m
		}
		var group []string // the members to form with
		askLater := false  // a member that formed with this node could not be asked about it
		for _, m := range alive {
			if !m.Formed || m.ID == n.cfg.ID {
				continue
			}
			if !slices.Contains(m.Peers, n.cfg.ID) {
				// A node that joined after formation may have been given
				// replicas before it lost its disk: the node records know.
				if err := n.checkIncarnation(m); err != nil {
					if errors.Is(err, ErrReplicaReplaced) {
						return nil, err
					}
					n.log.Info("joining: cannot ask a member about this node yet", "member", m.ID, "err", err)
					askLater = true
					break
				}
				n.log.Info("joining a formed cluster; the coordinator gives this node replicas as the placement needs", "via", m.ID, "key_placement", m.keys())
				replicas := n.cfg.Replicas
				if m.Replicas > 0 {
					replicas = m.Replicas // the cluster's, whatever this node was started with
				}
				return &clusterState{Shards: m.Shards, Replicas: replicas, Placement: make([][]string, m.Shards), Addrs: map[string]string{}, Keys: m.keys(), Hosted: []uint32{}, Bootstrapped: true}, nil
			}
			// The others formed the cluster with this node in it: either
			// before this node saw them all (take the same member list),
			// or long ago, and this node's data dir is not the one it had
			// then (refuse).
			if !verified[m.ID] {
				if err := n.checkIncarnation(m); err != nil {
					if errors.Is(err, ErrReplicaReplaced) {
						return nil, err
					}
					n.log.Info("bootstrap: cannot ask a member about this node yet", "member", m.ID, "err", err)
					askLater = true
					break
				}
				verified[m.ID] = true
			}
			group = m.Peers
			break
		}
		if !askLater && group == nil && len(alive) >= n.cfg.BootstrapExpect {
			for _, m := range alive {
				group = append(group, m.ID)
			}
		}
		if !askLater && group != nil && allPresent(group, byID) {
			addrs := map[string]string{}
			incs := map[string]string{}
			// A new cluster places keys by slot, unless a member is of a
			// version that only knows FNV: all must agree.
			keys := placement.Slots
			for _, id := range group {
				m := byID[id]
				if m.Shards != n.cfg.Shards {
					return nil, fmt.Errorf("member %s was started with --shards %d, this node with %d", m.ID, m.Shards, n.cfg.Shards)
				}
				addrs[id] = m.Raft
				if m.Incarnation != "" {
					incs[id] = m.Incarnation
				}
				if m.keys() == placement.FNV {
					keys = placement.FNV
				}
			}
			ids := append([]string(nil), group...)
			sort.Strings(ids)
			n.log.Info("bootstrap: forming cluster", "members", ids, "shards", n.cfg.Shards, "key_placement", keys)
			return &clusterState{
				Shards:       n.cfg.Shards,
				Replicas:     n.cfg.Replicas,
				Members:      ids,
				Placement:    placement.Place(ids, n.cfg.Shards, n.cfg.Replicas),
				Addrs:        addrs,
				Keys:         keys,
				Incarnations: incs,
			}, nil
		}
		if time.Since(lastLog) > 5*time.Second {
			n.log.Info("bootstrap: waiting for members", "seen", len(alive), "expect", n.cfg.BootstrapExpect)
			lastLog = time.Now()
		}
		select {
		case <-stop:
			return nil, errors.New("stopped before the cluster formed")
		case <-tick.C:
		}
	}
}

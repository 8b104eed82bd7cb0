package resp

import (
	"errors"

	"tally/node"
	"tally/placement"
)

// NodeRouter answers the CLUSTER commands and redirects for a tally node.
func NodeRouter(n *node.Node) Router { return nodeRouter{n} }

type nodeRouter struct{ n *node.Node }

var errNoSlots = errors.New("this cluster places counters by a hash of the name (it formed before slot placement), not by Redis Cluster slots: use a plain (non-cluster) client, which any node serves")

func (r nodeRouter) Topology() (Topology, error) {
	keys := r.n.KeyPlacement()
	if keys.Scheme != placement.Slots {
		return Topology{}, errNoSlots
	}
	st := r.n.ClusterStatus()
	t := Topology{Self: st.Node}
	for _, m := range st.Members {
		if m.RESP != "" && m.State == "alive" {
			t.Nodes = append(t.Nodes, TopologyNode{ID: m.ID, RESP: m.RESP})
		}
	}
	for _, sh := range st.Shards {
		first, last := placement.SlotRange(sh.ID, keys.Shards)
		t.Shards = append(t.Shards, TopologyShard{First: first, Last: last, Leader: sh.Leader, Replicas: sh.Replicas})
	}
	return t, nil
}

func (r nodeRouter) Owner(key string) (slot int, leader string, leads, hosts, ok bool) {
	if r.n.KeyPlacement().Scheme != placement.Slots {
		return 0, "", false, false, false
	}
	_, id, leads, hosts := r.n.Route(key)
	return placement.Slot(key), r.n.RESPAddrOf(id), leads, hosts, true
}

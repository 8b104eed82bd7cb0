package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"tally/cluster"
	"tally/forward"
	"tally/shard"
)

// Replica placement. The leader of shard 0 is the coordinator: every
// PlaceInterval it reads each shard's configuration from the shard's
// leader, the members' liveness from gossip and the node records
// (nodestate.go), asks cluster.Plan for the next steps and carries them
// out. It keeps no state of its own between rounds, so a new coordinator
// after a leader change picks up where the last one stopped; every change
// names the configuration index it was planned from and raft refuses it
// if the configuration moved meanwhile.

// catchUpSlack is how far behind its leader's commit index a learner may
// be and still be promoted: a voter may lag, but one far behind would
// hold back commits if the quorum came to rest on it.
const catchUpSlack = 256

// placeView is a round's view: the planner's input, plus what carrying
// out the steps needs.
type placeView struct {
	cluster.View
	configs map[uint32]shard.Configuration // by shard, as its leader reported it
	leaders map[uint32]string              // shard → the leader's cluster address
	addrs   map[string]string              // node id → cluster address
	incs    map[string]string              // node id → incarnation gossiped
	records map[string]string              // node id → incarnation recorded
}

// placeRound runs a coordinator round if this node leads shard 0.
func (n *Node) placeRound() {
	if sh := n.shard(0); sh == nil || !sh.IsLeader() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n.placeOnce(ctx)
}

// placeOnce runs one coordinator round.
func (n *Node) placeOnce(ctx context.Context) {
	v, err := n.gatherView(ctx)
	if err != nil {
		n.log.Debug("placement: no full view this round", "err", err)
		return
	}
	steps := cluster.Plan(v.View)
	var wg sync.WaitGroup
	for _, st := range steps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			done, err := n.runStep(sctx, v, st)
			switch {
			case err != nil:
				n.log.Warn("placement step failed", "step", st.String(), "err", err)
			case done:
				n.log.Info("placement step", "step", st.String())
			}
		}()
	}
	wg.Wait()
}

// gatherView reads the cluster as the planner needs it. When the node
// records cannot be read it returns the view without them (every node
// active) and the error.
func (n *Node) gatherView(ctx context.Context) (*placeView, error) {
	n.mu.RLock()
	st := n.state
	n.mu.RUnlock()
	if st == nil {
		return nil, errNotFormed
	}
	v := &placeView{
		View:    cluster.View{Replicas: st.Replicas, MaxLearners: n.cfg.MaxLearners},
		configs: map[uint32]shard.Configuration{},
		leaders: map[uint32]string{},
		addrs:   map[string]string{},
		incs:    map[string]string{},
	}
	members := n.ms.snapshot()
	ids := []string{}
	alive := map[string]bool{}
	hosts := map[string][]uint32{}
	for _, m := range members {
		ids = append(ids, m.ID)
		v.addrs[m.ID] = m.Raft
		v.incs[m.ID] = m.Incarnation
		alive[m.ID] = m.State == "alive"
		hosts[m.ID] = m.Hosted
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	shards := make([]cluster.Shard, n.shardCount())
	for s := range shards {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := uint32(s)
			shards[s] = cluster.Shard{ID: id}
			c, leaderID, addr, err := n.leaderConfig(ctx, id)
			if err != nil {
				return
			}
			sh := cluster.Shard{ID: id, Known: true, Leader: leaderID, Committed: c.Commit >= c.Index}
			for _, srv := range c.Servers {
				sh.Replicas = append(sh.Replicas, cluster.Replica{Node: srv.ID, Voter: srv.Voter})
			}
			shards[s] = sh
			mu.Lock()
			defer mu.Unlock()
			v.configs[id] = c
			v.leaders[id] = addr
			for _, srv := range c.Servers {
				if _, ok := v.addrs[srv.ID]; !ok {
					v.addrs[srv.ID] = srv.Addr
					ids = append(ids, srv.ID)
				}
			}
		}()
	}
	wg.Wait()
	slices.Sort(ids)
	ids = slices.Compact(ids)
	states, records, err := n.nodeRecords(ctx, ids)
	v.records = records
	for _, id := range ids {
		v.Nodes = append(v.Nodes, cluster.Node{ID: id, Alive: alive[id], State: states[id], Hosts: hosts[id]})
	}
	v.Shards = shards
	if err != nil {
		// The view is still returned: what it says of the shards and of
		// liveness is enough to explain a refusal.
		return v, fmt.Errorf("reading node records: %w", err)
	}
	return v, nil
}

// leaderConfig asks shard s's leader for its configuration.
func (n *Node) leaderConfig(ctx context.Context, s uint32) (c shard.Configuration, leaderID, addr string, err error) {
	err = n.routed(ctx, s, func(sh *shard.Shard, a string) error {
		if sh != nil {
			r, err := n.localConfig(forward.ConfigRequest{Shard: s, Leader: true})
			c, leaderID, addr = r.Config, n.cfg.ID, a
			return err
		}
		r, err := n.fwd.Config(ctx, a, forward.ConfigRequest{Shard: s, Leader: true})
		c, addr = r.Config, a
		return err
	})
	if err != nil {
		return c, "", "", err
	}
	if leaderID == "" {
		for _, srv := range c.Servers {
			if srv.Addr == addr {
				leaderID = srv.ID
			}
		}
	}
	return c, leaderID, addr, nil
}

// runStep carries out one step; done is false when it waited instead
// (a learner still catching up).
func (n *Node) runStep(ctx context.Context, v *placeView, st cluster.Step) (done bool, err error) {
	c := v.configs[st.Shard]
	leader := v.leaders[st.Shard]
	addr := v.addrs[st.Node]
	change := func(kind uint8, node, nodeAddr string) error {
		return n.change(ctx, leader, forward.ChangeRequest{Shard: st.Shard, Kind: kind, Node: node, Addr: nodeAddr, PrevIndex: c.Index})
	}
	switch st.Kind {
	case cluster.AddLearner:
		if err := n.recordIncarnation(ctx, v, st.Node); err != nil {
			return false, err
		}
		if err := n.host(ctx, st.Node, addr, st.Shard, true); err != nil {
			return false, fmt.Errorf("opening the replica: %w", err)
		}
		return true, change(forward.ChangeAddLearner, st.Node, addr)
	case cluster.Promote:
		r, err := n.replicaConfig(ctx, addr, forward.ConfigRequest{Shard: st.Shard, Node: st.Node})
		if err != nil {
			return false, fmt.Errorf("asking the learner how far it is: %w", err)
		}
		if r.Applied+catchUpSlack < c.Commit {
			return false, nil
		}
		return true, change(forward.ChangePromote, st.Node, addr)
	case cluster.Remove:
		if err := change(forward.ChangeRemove, st.Node, ""); err != nil {
			return false, err
		}
		// The node closes its replica now if it can be told; otherwise a
		// later round finds it open in no configuration and closes it.
		if err := n.host(ctx, st.Node, addr, st.Shard, false); err != nil {
			n.log.Debug("placement: closing a removed replica", "shard", st.Shard, "node", st.Node, "err", err)
		}
		return true, nil
	case cluster.TransferLeader:
		return true, change(forward.ChangeTransfer, st.To, v.addrs[st.To])
	case cluster.Open:
		return true, n.host(ctx, st.Node, addr, st.Shard, true)
	case cluster.Close:
		return true, n.host(ctx, st.Node, addr, st.Shard, false)
	case cluster.MarkLeft:
		return true, n.setNodeState(ctx, st.Node, cluster.Left)
	}
	return false, fmt.Errorf("unknown step %v", st)
}

// recordIncarnation makes sure the node records hold id's incarnation
// before it is given a replica, so that if it loses its disk later it is
// refused, not taken back as the old voter.
func (n *Node) recordIncarnation(ctx context.Context, v *placeView, id string) error {
	inc := v.incs[id]
	if inc == "" {
		return fmt.Errorf("node %s gossips no data dir incarnation (an older version?); not giving it replicas", id)
	}
	switch rec := v.records[id]; rec {
	case inc:
		return nil
	case "":
		val, ok := incarnationValue(inc)
		if !ok {
			return fmt.Errorf("node %s gossips a malformed incarnation %q", id, inc)
		}
		return n.setRecord(ctx, incarnationRecord(id), val)
	default:
		return fmt.Errorf("node %s runs on data dir incarnation %s, but the cluster knows it as %s; not giving it replicas", id, inc, rec)
	}
}

// change sends a configuration change to the shard leader at addr (this
// node's own replica when it is the one).
func (n *Node) change(ctx context.Context, addr string, req forward.ChangeRequest) error {
	if addr == n.mux.Addr() {
		return n.localChange(req)
	}
	return n.fwd.Change(ctx, addr, req)
}

// replicaConfig asks the node at addr (this one, when it is) for its
// replica's view of a shard's configuration and how far it has applied.
func (n *Node) replicaConfig(ctx context.Context, addr string, req forward.ConfigRequest) (forward.ConfigResponse, error) {
	if addr == n.mux.Addr() {
		return n.localConfig(req)
	}
	return n.fwd.Config(ctx, addr, req)
}

// host tells node id, at addr, to open or close its replica of shard s.
func (n *Node) host(ctx context.Context, id, addr string, s uint32, open bool) error {
	if addr == "" {
		return errors.New("no address known for the node")
	}
	req := forward.HostRequest{Shard: s, Open: open, Node: id}
	if addr == n.mux.Addr() {
		return n.localHost(req)
	}
	return n.fwd.Host(ctx, addr, req)
}

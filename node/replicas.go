package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"tally/forward"
	"tally/shard"
)

// Replicas that come and go while the node runs: the coordinator
// (place.go) tells a node to open an empty replica before the shard's
// leader adds it as a learner, and to close one the shard's committed
// configuration no longer lists. The node's cluster.json lists what it
// holds, so a restart reopens exactly those.

// errLeaderStays: a replica that leads its shard is not closed; its
// leadership moves first.
var errLeaderStays = errors.New("this replica leads its shard; hand the leadership off before closing it")

// errOpening: until a starting node has opened the replicas its
// cluster.json lists, it opens and closes no other (it would open a
// second raft on one shard's log); the coordinator asks again.
var errOpening = errors.New("this node is still opening its replicas")

// hostReplica opens this node's replica of shard s, empty unless its data
// is still on disk; a no-op when it is open.
func (n *Node) hostReplica(s uint32) error {
	n.hostMu.Lock()
	defer n.hostMu.Unlock()
	if n.stopping.Load() {
		return shard.ErrClosed
	}
	if !n.formed.Load() {
		return errOpening
	}
	if n.shard(s) != nil {
		return nil
	}
	if int(s) >= n.shardCount() {
		return fmt.Errorf("shard %d: the cluster has %d shards", s, n.shardCount())
	}
	if err := n.saveHosted(func(h []uint32) []uint32 { return append(h, s) }); err != nil {
		return err
	}
	sh, err := shard.Open(n.shardConfig(s))
	if err != nil {
		// Not listed, so a restart does not try it again either; the
		// coordinator asks again if it still wants the replica.
		if rerr := n.saveHosted(func(h []uint32) []uint32 {
			return slices.DeleteFunc(h, func(x uint32) bool { return x == s })
		}); rerr != nil {
			n.log.Warn("unlisting a replica that failed to open", "shard", s, "err", rerr)
		}
		return err
	}
	n.mu.Lock()
	n.shards[s] = sh
	n.mu.Unlock()
	n.publishHosted()
	n.log.Info("replica opened", "shard", s, "has_state", sh.HasState())
	return nil
}

// dropReplica closes this node's replica of shard s and deletes its log
// and snapshots; the raft term and vote stay in the log store, so a
// replica opened here later never votes twice in a term. The caller has
// made sure the shard's committed configuration does not list this node.
func (n *Node) dropReplica(s uint32) error {
	n.hostMu.Lock()
	defer n.hostMu.Unlock()
	if !n.formed.Load() {
		return errOpening
	}
	sh := n.shard(s)
	if sh != nil && sh.IsLeader() {
		return errLeaderStays
	}
	if err := n.saveHosted(func(h []uint32) []uint32 {
		return slices.DeleteFunc(h, func(x uint32) bool { return x == s })
	}); err != nil {
		return err
	}
	if sh != nil {
		n.mu.Lock()
		delete(n.shards, s)
		n.mu.Unlock()
		if err := sh.Close(); err != nil {
			n.log.Warn("closing a dropped replica", "shard", s, "err", err)
		}
		n.onLeaderChange(s, false)
	}
	n.publishHosted()
	if err := n.deleteReplicaData(s); err != nil {
		return fmt.Errorf("shard %d: deleting the dropped replica's data: %w", s, err)
	}
	n.log.Info("replica dropped", "shard", s)
	return nil
}

// deleteReplicaData removes shard s's log entries and snapshot directory.
func (n *Node) deleteReplicaData(s uint32) error {
	n.mu.RLock()
	logs := n.logs
	n.mu.RUnlock()
	if logs != nil {
		view, err := logs.Shard(s)
		if err != nil {
			return err
		}
		first, _ := view.FirstIndex()
		last, _ := view.LastIndex()
		if last > 0 {
			if err := view.DeleteRange(first, last); err != nil {
				return err
			}
		}
	}
	return os.RemoveAll(n.shardDir(s))
}

// saveHosted changes the hosted list of cluster.json durably.
func (n *Node) saveHosted(f func([]uint32) []uint32) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	st := n.state
	if st == nil {
		return errNotFormed
	}
	h := f(slices.Clone(st.Hosted))
	slices.Sort(h)
	h = slices.Compact(h)
	prev := st.Hosted
	st.Hosted = h
	if err := saveState(n.cfg.DataDir, st); err != nil {
		st.Hosted = prev
		return fmt.Errorf("saving cluster state: %w", err)
	}
	return nil
}

// publishHosted gossips the replicas this node has open.
func (n *Node) publishHosted() {
	var hosted []uint32
	for _, sh := range n.hostedShards() {
		hosted = append(hosted, sh.ID())
	}
	n.ms.update(func(m *meta) { m.Hosted = hosted })
}

// The forwarded requests of replica placement (forward/membership.go).

// notMe refuses a request meant for another node that reached this one:
// a replacement listening on a removed node's address.
func (n *Node) notMe(id string) error {
	if id != "" && id != n.cfg.ID {
		return fmt.Errorf(notMePrefix+"%s, not %s", n.cfg.ID, id)
	}
	return nil
}

// notMePrefix starts notMe's refusal, which travels back as text.
const notMePrefix = "this is node "

func (n *Node) localConfig(req forward.ConfigRequest) (forward.ConfigResponse, error) {
	if err := n.notMe(req.Node); err != nil {
		return forward.ConfigResponse{}, err
	}
	sh := n.shard(req.Shard)
	if sh == nil {
		return forward.ConfigResponse{}, forward.ErrNoShard
	}
	if req.Leader && !sh.IsLeader() {
		id, addr := sh.Leader()
		return forward.ConfigResponse{}, &shard.NotLeaderError{Shard: req.Shard, LeaderID: id, LeaderAddr: addr}
	}
	c, err := sh.Configuration()
	if err != nil {
		return forward.ConfigResponse{}, err
	}
	return forward.ConfigResponse{Config: c, Applied: sh.AppliedIndex()}, nil
}

func (n *Node) localChange(req forward.ChangeRequest) error {
	sh := n.shard(req.Shard)
	if sh == nil {
		return forward.ErrNoShard
	}
	if !sh.IsLeader() {
		id, addr := sh.Leader()
		return &shard.NotLeaderError{Shard: req.Shard, LeaderID: id, LeaderAddr: addr}
	}
	switch req.Kind {
	case forward.ChangeAddLearner:
		return sh.AddLearner(req.Node, req.Addr, req.PrevIndex)
	case forward.ChangePromote:
		return sh.Promote(req.Node, req.Addr, req.PrevIndex)
	case forward.ChangeRemove:
		return sh.RemoveServer(req.Node, req.PrevIndex)
	case forward.ChangeTransfer:
		return sh.TransferLeadership(req.Node, req.Addr)
	}
	return fmt.Errorf("unknown configuration change %d", req.Kind)
}

func (n *Node) localHost(req forward.HostRequest) error {
	if err := n.notMe(req.Node); err != nil {
		return err
	}
	if req.Open {
		return n.hostReplica(req.Shard)
	}
	return n.dropReplica(req.Shard)
}

func (l forwardLocal) Config(_ context.Context, req forward.ConfigRequest) (forward.ConfigResponse, error) {
	return l.n.localConfig(req)
}

func (l forwardLocal) Change(_ context.Context, req forward.ChangeRequest) (forward.ChangeResponse, error) {
	return forward.ChangeResponse{}, l.n.localChange(req)
}

func (l forwardLocal) Host(_ context.Context, req forward.HostRequest) (forward.HostResponse, error) {
	return forward.HostResponse{}, l.n.localHost(req)
}

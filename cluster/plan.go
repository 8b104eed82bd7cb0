package cluster

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Node is one member as the coordinator sees it.
type Node struct {
	ID    string
	Alive bool // gossip says it is up (a suspect or dead node takes nothing new)
	State State
	// Hosts lists the shards it has a replica open for, as it gossips:
	// a replica in a configuration that is not open must be opened, and
	// one open but in no configuration closed.
	Hosts []uint32
}

// Replica is one server of a shard's raft configuration.
type Replica struct {
	Node  string
	Voter bool // false: a learner (raft non-voter) catching up
}

// Shard is one shard's raft configuration as its leader reported it.
type Shard struct {
	ID       uint32
	Known    bool // false: its leader could not be asked this round; plan nothing for it
	Leader   string
	Replicas []Replica
	// Committed: the configuration is committed, so a node missing from
	// it is safe to close. A configuration change still in flight may yet
	// be lost with its leader.
	Committed bool
}

func (s *Shard) has(node string) bool {
	return slices.ContainsFunc(s.Replicas, func(r Replica) bool { return r.Node == node })
}

func (s *Shard) voters() []string {
	var out []string
	for _, r := range s.Replicas {
		if r.Voter {
			out = append(out, r.Node)
		}
	}
	return out
}

// View is everything the planner decides from.
type View struct {
	Replicas int // the replication factor the cluster was formed with
	Nodes    []Node
	Shards   []Shard
	// MaxLearners bounds the learners catching up at once in the whole
	// cluster (each costs its shard's leader a snapshot stream); 0 means 2.
	MaxLearners int
}

// Kind is what a Step does.
type Kind uint8

const (
	// AddLearner opens an empty replica of Shard on Node and adds it to
	// the shard's configuration as a non-voter.
	AddLearner Kind = iota + 1
	// Promote makes the learner on Node a voter once it has caught up.
	Promote
	// Remove drops Node's replica from the shard's configuration (and
	// then closes it there).
	Remove
	// TransferLeader moves the shard's leadership away from Node, the
	// replica about to be removed; To is the preferred voter.
	TransferLeader
	// Open opens Node's replica of a shard whose configuration lists it.
	Open
	// Close closes and deletes Node's replica of a shard whose committed
	// configuration does not list it.
	Close
	// MarkLeft records that the leaving Node holds nothing any more.
	MarkLeft
)

func (k Kind) String() string {
	return [...]string{"none", "add-learner", "promote", "remove", "transfer-leader", "open", "close", "mark-left"}[k]
}

// Step is one action of a plan.
type Step struct {
	Kind  Kind
	Shard uint32
	Node  string
	To    string // TransferLeader only
}

func (s Step) String() string {
	if s.Kind == MarkLeft {
		return fmt.Sprintf("%s %s", s.Kind, s.Node)
	}
	if s.Kind == TransferLeader {
		return fmt.Sprintf("%s shard %d from %s to %s", s.Kind, s.Shard, s.Node, s.To)
	}
	return fmt.Sprintf("%s shard %d on %s", s.Kind, s.Shard, s.Node)
}

// planner is one Plan call's working state.
type planner struct {
	v      *View
	nodes  map[string]*Node
	counts map[string]int // configuration entries per node, moves planned this round included
	r      int            // replicas each shard should have
	budget int            // learners that may still be added
	steps  []Step
}

// Plan returns the next steps toward a cluster where every shard has its
// replicas on live active nodes, each node holds its share (shards ×
// replicas ÷ active nodes, ±1), and leaving and removed nodes hold
// nothing. It changes each shard's configuration by at most one step per
// call, and grows a shard before it shrinks it, so no shard drops below
// its replica count (a removed node's replica is the exception: that
// node is gone already). Calling it again after the steps ran continues
// the work; a step that failed is planned again.
func Plan(v View) []Step {
	p := &planner{v: &v, nodes: map[string]*Node{}, counts: map[string]int{}}
	active := 0
	for i := range v.Nodes {
		nd := &v.Nodes[i]
		p.nodes[nd.ID] = nd
		if nd.State == Active {
			active++
		}
	}
	p.r = min(v.Replicas, active)
	if p.r < 1 {
		return nil
	}
	p.budget = v.MaxLearners
	if p.budget == 0 {
		p.budget = 2
	}
	shards := slices.Clone(v.Shards)
	sort.Slice(shards, func(i, j int) bool { return shards[i].ID < shards[j].ID })
	for _, s := range shards {
		for _, r := range s.Replicas {
			p.counts[r.Node]++
			if !r.Voter {
				p.budget--
			}
		}
	}
	for i := range shards {
		p.shard(&shards[i])
	}
	p.housekeeping(shards)
	return p.steps
}

func (p *planner) add(s Step) { p.steps = append(p.steps, s) }

func (p *planner) state(id string) State {
	if nd := p.nodes[id]; nd != nil {
		return nd.State
	}
	return Active // a node gossip forgot: keep its replicas, never a destination
}

func (p *planner) alive(id string) bool {
	nd := p.nodes[id]
	return nd != nil && nd.Alive
}

// destination is the live active node with the fewest replicas that
// s does not have (ties by id), or "".
func (p *planner) destination(s *Shard) string {
	best := ""
	for _, nd := range p.v.Nodes {
		if nd.State != Active || !nd.Alive || s.has(nd.ID) {
			continue
		}
		if best == "" || p.counts[nd.ID] < p.counts[best] || (p.counts[nd.ID] == p.counts[best] && nd.ID < best) {
			best = nd.ID
		}
	}
	return best
}

// shard plans at most one configuration change of s.
func (p *planner) shard(s *Shard) {
	if !s.Known {
		return
	}
	// A removed node's replica goes first: it counts toward the quorum
	// and will never answer.
	for _, r := range s.Replicas {
		if p.state(r.Node) == Removed {
			p.removeOrHandOff(s, r.Node)
			return
		}
	}
	voters := s.voters()
	for _, r := range s.Replicas {
		if r.Voter {
			continue
		}
		if p.state(r.Node) != Active || !p.alive(r.Node) {
			p.add(Step{Kind: Remove, Shard: s.ID, Node: r.Node})
			p.counts[r.Node]--
		} else {
			p.add(Step{Kind: Promote, Shard: s.ID, Node: r.Node})
		}
		return
	}
	switch {
	case len(voters) > p.r:
		p.removeOrHandOff(s, p.victim(s, voters))
	case len(voters) < p.r:
		if dst := p.destination(s); dst != "" && p.budget > 0 {
			p.learner(s, dst, "")
		}
	default:
		p.rebalance(s, voters)
	}
}

// removeOrHandOff removes id from s, first moving the leadership away
// if id leads it.
func (p *planner) removeOrHandOff(s *Shard, id string) {
	if s.Leader == id {
		to := ""
		for _, v := range s.voters() {
			if v != id && p.alive(v) && p.state(v).Holds() && (to == "" || p.counts[v] < p.counts[to]) {
				to = v
			}
		}
		if to != "" {
			p.add(Step{Kind: TransferLeader, Shard: s.ID, Node: id, To: to})
		}
		return
	}
	p.add(Step{Kind: Remove, Shard: s.ID, Node: id})
	p.counts[id]--
}

// victim is the voter of an over-full shard to remove: a leaving node's,
// else a dead one's, else the one on the node with the most replicas
// (the leader last, so no hand-off is needed when another will do).
func (p *planner) victim(s *Shard, voters []string) string {
	rank := func(id string) (int, int, int) {
		switch {
		case p.state(id) == Leaving:
			return 0, 0, 0
		case !p.alive(id):
			return 1, 0, 0
		}
		lead := 0
		if s.Leader == id {
			lead = 1
		}
		return 2, -p.counts[id], lead
	}
	best := voters[0]
	for _, id := range voters[1:] {
		a1, a2, a3 := rank(id)
		b1, b2, b3 := rank(best)
		if a1 < b1 || (a1 == b1 && (a2 < b2 || (a2 == b2 && (a3 < b3 || (a3 == b3 && id > best))))) {
			best = id
		}
	}
	return best
}

// rebalance starts moving one replica of a full shard: off a leaving
// node, or from the fullest node to the emptiest when they differ by two
// or more.
func (p *planner) rebalance(s *Shard, voters []string) {
	if p.budget <= 0 {
		return
	}
	dst := p.destination(s)
	if dst == "" {
		return
	}
	for _, v := range voters {
		if p.state(v) == Leaving {
			p.learner(s, dst, v)
			return
		}
	}
	src := ""
	for _, v := range voters {
		if !p.alive(v) {
			continue // a dead node's replica stays until it is back or removed
		}
		if src == "" || p.counts[v] > p.counts[src] || (p.counts[v] == p.counts[src] && v > src) {
			src = v
		}
	}
	if src != "" && p.counts[src]-p.counts[dst] >= 2 {
		p.learner(s, dst, src)
	}
}

// learner plans adding dst to s; src, if set, is the replica it will
// relieve, counted as gone so the rest of the round plans around it.
func (p *planner) learner(s *Shard, dst, src string) {
	p.add(Step{Kind: AddLearner, Shard: s.ID, Node: dst})
	p.counts[dst]++
	if src != "" {
		p.counts[src]--
	}
	p.budget--
}

// housekeeping opens replicas configurations name, closes replicas no
// configuration names, and marks drained leaving nodes left.
func (p *planner) housekeeping(shards []Shard) {
	byID := map[uint32]*Shard{}
	for i := range shards {
		byID[shards[i].ID] = &shards[i]
	}
	for _, s := range shards {
		if !s.Known {
			continue
		}
		for _, r := range s.Replicas {
			nd := p.nodes[r.Node]
			if nd != nil && nd.Alive && nd.State.Holds() && !slices.Contains(nd.Hosts, s.ID) {
				p.add(Step{Kind: Open, Shard: s.ID, Node: r.Node})
			}
		}
	}
	for _, nd := range p.v.Nodes {
		if !nd.Alive {
			continue
		}
		for _, h := range nd.Hosts {
			s := byID[h]
			if s != nil && s.Known && s.Committed && !s.has(nd.ID) {
				p.add(Step{Kind: Close, Shard: h, Node: nd.ID})
			}
		}
	}
	for _, nd := range p.v.Nodes {
		if nd.State != Leaving {
			continue
		}
		held := false
		for _, s := range shards {
			if !s.Known || s.has(nd.ID) {
				held = true
				break
			}
		}
		if !held && (!nd.Alive || len(nd.Hosts) == 0) {
			p.add(Step{Kind: MarkLeft, Node: nd.ID})
		}
	}
}

// CanDecommission reports why decommissioning id would leave too few
// active nodes for the shards' replicas, or nil.
func CanDecommission(v View, id string) error {
	active := 0
	found := false
	for _, nd := range v.Nodes {
		if nd.State == Active {
			active++
		}
		if nd.ID == id {
			found = true
			if nd.State != Active {
				return nil // already leaving or gone: nothing new to check
			}
		}
	}
	if !found {
		return fmt.Errorf("node %s is not a member", id)
	}
	if need := min(v.Replicas, active); active-1 < need {
		return fmt.Errorf("decommissioning %s would leave %d active node(s) for shards of %d replicas; add a node first", id, active-1, need)
	}
	return nil
}

// CanRemove reports why removing the dead node id from every shard would
// fail or lose data, or nil: it must not be alive, and every shard it is
// a voter of must keep a live quorum without it (a removal is itself a
// raft entry that a quorum of the old configuration must commit).
func CanRemove(v View, id string) error {
	var nd *Node
	for i := range v.Nodes {
		if v.Nodes[i].ID == id {
			nd = &v.Nodes[i]
		}
	}
	if nd != nil && nd.Alive {
		return fmt.Errorf("node %s is alive; decommission it instead (POST /v1/cluster/nodes/%s/decommission), or stop it first", id, id)
	}
	alive := map[string]bool{}
	for _, n := range v.Nodes {
		alive[n.ID] = n.Alive && n.State.Holds()
	}
	var lost []string
	for _, s := range v.Shards {
		if !s.Known {
			if nd == nil || slices.Contains(nd.Hosts, s.ID) {
				lost = append(lost, fmt.Sprintf("shard %d (no leader answers)", s.ID))
			}
			continue
		}
		voters := s.voters()
		if !slices.Contains(voters, id) {
			continue
		}
		up := 0
		var down []string
		for _, v := range voters {
			if v != id && alive[v] {
				up++
			} else if v != id {
				down = append(down, v)
			}
		}
		if up < len(voters)/2+1 {
			lost = append(lost, fmt.Sprintf("shard %d (voters down besides %s: %s)", s.ID, id, strings.Join(down, ", ")))
		}
	}
	if len(lost) > 0 {
		return fmt.Errorf("removing %s would leave shards without a quorum to agree on it: %s; bring back the nodes that are down (their data dirs hold the shards' data), then remove %s",
			id, strings.Join(lost, "; "), id)
	}
	return nil
}

package cluster

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// sim is a cluster the tests run plans against: it applies every step
// the way the node package does (learners catch up at once), so a test
// can run the planner to a fixed point and check where it ends.
type sim struct {
	v View
}

func newSim(nodes []string, shards, replicas int) *sim {
	s := &sim{v: View{Replicas: replicas}}
	for _, id := range nodes {
		s.v.Nodes = append(s.v.Nodes, Node{ID: id, Alive: true})
	}
	for i := range shards {
		sh := Shard{ID: uint32(i), Known: true, Committed: true}
		for r := range min(replicas, len(nodes)) {
			sh.Replicas = append(sh.Replicas, Replica{Node: nodes[(i+r)%len(nodes)], Voter: true})
		}
		sh.Leader = sh.Replicas[0].Node
		s.v.Shards = append(s.v.Shards, sh)
	}
	s.syncHosts()
	return s
}

func (s *sim) node(id string) *Node {
	for i := range s.v.Nodes {
		if s.v.Nodes[i].ID == id {
			return &s.v.Nodes[i]
		}
	}
	return nil
}

// syncHosts makes every live node host exactly its configured replicas.
func (s *sim) syncHosts() {
	for i := range s.v.Nodes {
		nd := &s.v.Nodes[i]
		if !nd.Alive {
			continue
		}
		nd.Hosts = nil
		for _, sh := range s.v.Shards {
			if sh.has(nd.ID) {
				nd.Hosts = append(nd.Hosts, sh.ID)
			}
		}
	}
}

func (s *sim) apply(t *testing.T, st Step) {
	t.Helper()
	if st.Kind == MarkLeft {
		s.node(st.Node).State = Left
		return
	}
	sh := &s.v.Shards[st.Shard]
	switch st.Kind {
	case AddLearner:
		if sh.has(st.Node) {
			t.Fatalf("%v: already a replica", st)
		}
		sh.Replicas = append(sh.Replicas, Replica{Node: st.Node})
	case Promote:
		for i := range sh.Replicas {
			if sh.Replicas[i].Node == st.Node {
				sh.Replicas[i].Voter = true
			}
		}
	case Remove:
		if sh.Leader == st.Node {
			t.Fatalf("%v: removes the leader", st)
		}
		sh.Replicas = slices.DeleteFunc(sh.Replicas, func(r Replica) bool { return r.Node == st.Node })
	case TransferLeader:
		if !slices.Contains(sh.voters(), st.To) || st.To == st.Node {
			t.Fatalf("%v: bad target", st)
		}
		sh.Leader = st.To
	}
}

// kill marks id dead and moves the leaderships it held to another voter,
// as raft would.
func (s *sim) kill(id string) {
	s.node(id).Alive = false
	for i := range s.v.Shards {
		sh := &s.v.Shards[i]
		if sh.Leader != id {
			continue
		}
		for _, v := range sh.voters() {
			if v != id && s.node(v).Alive {
				sh.Leader = v
				break
			}
		}
	}
}

// run plans and applies until nothing is left to do; it fails the test
// when some shard ever has fewer live voters than it started with.
func (s *sim) run(t *testing.T) int {
	t.Helper()
	prev := map[uint32]int{}
	for _, sh := range s.v.Shards {
		prev[sh.ID] = len(sh.voters())
	}
	for round := 0; round < 200; round++ {
		steps := Plan(s.v)
		if len(steps) == 0 {
			return round
		}
		seen := map[uint32]bool{}
		removedBefore := map[uint32]bool{}
		for _, sh := range s.v.Shards {
			removedBefore[sh.ID] = s.hasRemoved(sh)
		}
		for _, st := range steps {
			if st.Kind != MarkLeft && st.Kind != Open && st.Kind != Close {
				if seen[st.Shard] {
					t.Fatalf("round %d: two changes of shard %d: %v", round, st.Shard, steps)
				}
				seen[st.Shard] = true
			}
			s.apply(t, st)
		}
		s.syncHosts()
		for _, sh := range s.v.Shards {
			n := len(sh.voters())
			if n < min(prev[sh.ID], s.v.Replicas) && !removedBefore[sh.ID] {
				t.Fatalf("round %d: shard %d down to voters %v after %v", round, sh.ID, sh.voters(), steps)
			}
			prev[sh.ID] = n
		}
	}
	t.Fatalf("no fixed point after 200 rounds")
	return 0
}

func (s *sim) activeCount() int {
	n := 0
	for _, nd := range s.v.Nodes {
		if nd.State == Active {
			n++
		}
	}
	return n
}

func (s *sim) hasRemoved(sh Shard) bool {
	for _, r := range sh.Replicas {
		if nd := s.node(r.Node); nd != nil && nd.State == Removed {
			return true
		}
	}
	return false
}

func (s *sim) counts() map[string]int {
	out := map[string]int{}
	for _, sh := range s.v.Shards {
		for _, r := range sh.Replicas {
			out[r.Node]++
		}
	}
	return out
}

// checkEven fails unless every active node holds its share ±1 and every
// shard has the replica count, all voters.
func (s *sim) checkEven(t *testing.T) {
	t.Helper()
	r := min(s.v.Replicas, s.activeCount())
	for _, sh := range s.v.Shards {
		if len(sh.Replicas) != r || len(sh.voters()) != r {
			t.Fatalf("shard %d: replicas %v, want %d voters", sh.ID, sh.Replicas, r)
		}
		for _, rep := range sh.Replicas {
			if st := s.node(rep.Node).State; st != Active {
				t.Fatalf("shard %d keeps a replica on %s node %s", sh.ID, st, rep.Node)
			}
		}
	}
	c := s.counts()
	lo, hi := 1<<30, 0
	for _, nd := range s.v.Nodes {
		if nd.State != Active {
			if c[nd.ID] != 0 {
				t.Fatalf("%s node %s holds %d replicas", nd.State, nd.ID, c[nd.ID])
			}
			continue
		}
		lo, hi = min(lo, c[nd.ID]), max(hi, c[nd.ID])
	}
	if hi-lo > 1 {
		t.Fatalf("uneven: %v", c)
	}
}

func TestJoinSpreadsReplicas(t *testing.T) {
	for _, tc := range []struct{ from, to, shards int }{{3, 4, 8}, {3, 6, 8}, {1, 3, 8}, {3, 9, 64}, {2, 5, 7}} {
		t.Run(fmt.Sprintf("%d-to-%d-nodes-%d-shards", tc.from, tc.to, tc.shards), func(t *testing.T) {
			var ids []string
			for i := range tc.from {
				ids = append(ids, fmt.Sprintf("n%d", i+1))
			}
			s := newSim(ids, tc.shards, 3)
			for i := tc.from; i < tc.to; i++ {
				s.v.Nodes = append(s.v.Nodes, Node{ID: fmt.Sprintf("n%d", i+1), Alive: true})
			}
			s.run(t)
			s.checkEven(t)
		})
	}
}

func TestDecommissionDrainsAndMarksLeft(t *testing.T) {
	s := newSim([]string{"a", "b", "c", "d"}, 8, 3)
	s.run(t)
	s.node("b").State = Leaving
	s.run(t)
	s.checkEven(t)
	if st := s.node("b").State; st != Left {
		t.Fatalf("b is %s after draining, want left", st)
	}
	for _, sh := range s.v.Shards {
		if sh.Leader == "b" {
			t.Fatalf("b still leads shard %d", sh.ID)
		}
	}
}

func TestRemovedNodeIsReplaced(t *testing.T) {
	s := newSim([]string{"a", "b", "c", "d"}, 8, 3)
	s.run(t)
	s.kill("c")
	s.node("c").State = Removed
	s.run(t)
	s.checkEven(t)
}

func TestDeadNodeKeepsItsReplicas(t *testing.T) {
	s := newSim([]string{"a", "b", "c", "d"}, 8, 3)
	s.run(t)
	before := s.counts()["d"]
	s.kill("d")
	if steps := Plan(s.v); len(steps) != 0 {
		t.Fatalf("a dead (not removed) node's replicas were moved: %v", steps)
	}
	if got := s.counts()["d"]; got != before {
		t.Fatalf("d holds %d, had %d", got, before)
	}
}

func TestOneLearnerBudget(t *testing.T) {
	s := newSim([]string{"a", "b", "c"}, 8, 3)
	s.v.Nodes = append(s.v.Nodes, Node{ID: "d", Alive: true}, Node{ID: "e", Alive: true})
	s.v.MaxLearners = 1
	steps := Plan(s.v)
	adds := 0
	for _, st := range steps {
		if st.Kind == AddLearner {
			adds++
		}
	}
	if adds != 1 {
		t.Fatalf("%d learners planned with a budget of 1: %v", adds, steps)
	}
}

func TestLearnerOnDeadNodeIsRemoved(t *testing.T) {
	s := newSim([]string{"a", "b", "c"}, 1, 3)
	s.v.Nodes = append(s.v.Nodes, Node{ID: "d"})
	s.v.Shards[0].Replicas = append(s.v.Shards[0].Replicas, Replica{Node: "d"})
	steps := Plan(s.v)
	if len(steps) != 1 || steps[0].Kind != Remove || steps[0].Node != "d" {
		t.Fatalf("plan %v, want the dead learner removed", steps)
	}
}

func TestOrphanClosedOnlyWhenCommitted(t *testing.T) {
	s := newSim([]string{"a", "b", "c", "d"}, 1, 3)
	s.node("d").Hosts = []uint32{0}
	s.v.Shards[0].Committed = false
	for _, st := range Plan(s.v) {
		if st.Kind == Close {
			t.Fatalf("closed a replica on an uncommitted configuration: %v", st)
		}
	}
	s.v.Shards[0].Committed = true
	if !slices.Contains(Plan(s.v), Step{Kind: Close, Shard: 0, Node: "d"}) {
		t.Fatalf("orphan on d not closed: %v", Plan(s.v))
	}
}

func TestUnknownShardIsLeftAlone(t *testing.T) {
	s := newSim([]string{"a", "b", "c"}, 2, 3)
	s.v.Nodes = append(s.v.Nodes, Node{ID: "d", Alive: true})
	s.v.Shards[0].Known = false
	for _, st := range Plan(s.v) {
		if st.Shard == 0 && st.Kind != MarkLeft {
			t.Fatalf("planned %v for a shard whose leader did not answer", st)
		}
	}
}

func TestCanDecommission(t *testing.T) {
	s := newSim([]string{"a", "b", "c"}, 8, 3)
	if err := CanDecommission(s.v, "a"); err == nil || !strings.Contains(err.Error(), "add a node") {
		t.Fatalf("3 nodes, 3 replicas: %v", err)
	}
	s.v.Nodes = append(s.v.Nodes, Node{ID: "d", Alive: true})
	if err := CanDecommission(s.v, "a"); err != nil {
		t.Fatal(err)
	}
	if err := CanDecommission(s.v, "zz"); err == nil {
		t.Fatal("decommissioned a stranger")
	}
}

func TestCanRemove(t *testing.T) {
	s := newSim([]string{"a", "b", "c"}, 4, 3)
	if err := CanRemove(s.v, "a"); err == nil || !strings.Contains(err.Error(), "alive") {
		t.Fatalf("removing a live node: %v", err)
	}
	s.node("a").Alive = false
	if err := CanRemove(s.v, "a"); err != nil {
		t.Fatalf("one dead of three: %v", err)
	}
	s.node("b").Alive = false
	err := CanRemove(s.v, "a")
	if err == nil || !strings.Contains(err.Error(), "b") || !strings.Contains(err.Error(), "quorum") {
		t.Fatalf("two dead of three: %v", err)
	}
}

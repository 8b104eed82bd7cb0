package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Membership faults: nodes leave and new ones take their place while the
// workload runs. The cluster keeps its size (one slot of ports is always
// spare), so the clients' addresses stay the same slots throughout.

const (
	// Replace SIGKILLs a node, removes it from every shard, and starts a
	// new node (new id, empty data dir) on its ports: the
	// kill-remove-add of replacing a dead machine.
	Replace = "replace"
	// Decommission adds a new node on the spare slot, then decommissions
	// the busy shard's leader (the node clients write to most) and stops
	// it once it has left; Recovery is the longest write gap on the busy
	// shard while it moved.
	Decommission = "decommission"
)

// fresh gives slot n a new node id and an empty data dir, and starts it.
func (c *Cluster) fresh(ctx context.Context, n *Node) error {
	id := fmt.Sprintf("n%d", c.nextID)
	c.nextID++
	// Expect more members than there are: it can only join.
	c.setIdentity(n, id, len(c.Nodes)+2)
	if err := c.Start(n); err != nil {
		return err
	}
	return c.waitNodeReady(ctx, n, 2*time.Minute)
}

func (c *Cluster) waitNodeReady(ctx context.Context, n *Node, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		if !n.Running() {
			return fmt.Errorf("%s exited; see %s", n.ID, n.logPath)
		}
		if err := c.getJSON(ctx, n.HTTP, "/readyz", nil); err == nil {
			return nil
		}
		if err := pause(ctx, 50*time.Millisecond); err != nil {
			return fmt.Errorf("%s not ready within %v", n.ID, within)
		}
	}
}

// Stop SIGTERMs n and waits for it to exit.
func (c *Cluster) Stop(n *Node) error {
	if err := c.signal(n, syscall.SIGTERM, false); err != nil {
		return err
	}
	n.mu.Lock()
	done := n.done
	n.mu.Unlock()
	select {
	case <-done:
		return nil
	case <-time.After(40 * time.Second):
		return c.Kill(n)
	}
}

// nodeCall sends a membership request to the first member other than
// skip that answers, retrying while gossip still sees a just-killed node
// alive (a removal is refused until then).
func (c *Cluster) nodeCall(ctx context.Context, method, path string, skip *Node) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	var last error
	for {
		for _, n := range c.Nodes {
			if n == skip || !n.Running() {
				continue
			}
			req, _ := http.NewRequestWithContext(ctx, method, "http://"+n.HTTP+path, nil)
			last = c.doWith(req, &http.Client{Timeout: 30 * time.Second}, nil)
			if last == nil {
				return nil
			}
			if !strings.Contains(last.Error(), "alive") && !strings.Contains(last.Error(), " 503 ") {
				return last
			}
			break
		}
		if pause(ctx, 500*time.Millisecond) != nil {
			return fmt.Errorf("%s %s: %v", method, path, last)
		}
	}
}

// clusterView is what /v1/cluster tells of members and replicas.
type clusterView struct {
	Members []struct {
		ID    string `json:"id"`
		State string `json:"state"`
	} `json:"members"`
	Shards []struct {
		Leader   string   `json:"leader"`
		Replicas []string `json:"replicas"`
		Learners []string `json:"learners"`
	} `json:"shards"`
}

// WaitPlaced waits until every shard has its replicas (min(3, members))
// on the members and only there, none catching up, each member holding
// its share ±1, and every shard has a leader.
func (c *Cluster) WaitPlaced(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	ids := []string{}
	for _, n := range c.Nodes {
		ids = append(ids, n.ID)
	}
	r := min(3, len(ids))
	why := ""
	for {
		var v clusterView
		err := c.getJSON(ctx, c.liveHTTP(), "/v1/cluster", &v)
		if err == nil {
			why = placedWhy(v, ids, r)
			if why == "" {
				return nil
			}
		} else {
			why = err.Error()
		}
		if pause(ctx, 200*time.Millisecond) != nil {
			return fmt.Errorf("replicas not placed on %v within %v: %s", ids, within, why)
		}
	}
}

func placedWhy(v clusterView, ids []string, r int) string {
	counts := map[string]int{}
	for i, s := range v.Shards {
		if s.Leader == "" || len(s.Replicas) != r || len(s.Learners) != 0 {
			return fmt.Sprintf("shard %d: leader %q voters %v learners %v", i, s.Leader, s.Replicas, s.Learners)
		}
		for _, id := range s.Replicas {
			if !slices.Contains(ids, id) {
				return fmt.Sprintf("shard %d is still on %s", i, id)
			}
			counts[id]++
		}
	}
	share := float64(r*len(v.Shards)) / float64(len(ids))
	for _, id := range ids {
		if c := float64(counts[id]); c < share-1 || c > share+1 {
			return fmt.Sprintf("%s holds %d, share %.1f", id, counts[id], share)
		}
	}
	return ""
}

// waitDropped waits until no shard's configuration lists id.
func (c *Cluster) waitDropped(ctx context.Context, id string, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for {
		var v clusterView
		if err := c.getJSON(ctx, c.liveHTTP(), "/v1/cluster", &v); err == nil {
			listed := false
			for _, s := range v.Shards {
				listed = listed || slices.Contains(s.Replicas, id) || slices.Contains(s.Learners, id)
			}
			if !listed {
				return nil
			}
		}
		if pause(ctx, 200*time.Millisecond) != nil {
			return fmt.Errorf("shards still list %s after %v", id, within)
		}
	}
}

// liveHTTP is the HTTP address of a running member.
func (c *Cluster) liveHTTP() string {
	for _, n := range c.Nodes {
		if n.Running() {
			return n.HTTP
		}
	}
	return c.Nodes[0].HTTP
}

// memberState is id's state in /v1/cluster as the first member answering
// tells it.
func (c *Cluster) memberState(ctx context.Context, id string, skip *Node) string {
	for _, n := range c.Nodes {
		if n == skip || !n.Running() {
			continue
		}
		var v clusterView
		if err := c.getJSON(ctx, n.HTTP, "/v1/cluster", &v); err != nil {
			continue
		}
		for _, m := range v.Members {
			if m.ID == id {
				return m.State
			}
		}
		return ""
	}
	return ""
}

func (nm *nemesis) replace(ctx context.Context, rec *FaultRecord) error {
	if !nm.c.managed {
		return errNotManaged
	}
	victim := nm.c.Nodes[nm.rng.IntN(len(nm.c.Nodes))]
	rec.Node = victim.ID
	old := victim.ID
	if err := nm.c.Kill(victim); err != nil {
		return err
	}
	start := time.Now()
	if err := nm.c.nodeCall(ctx, http.MethodDelete, "/v1/cluster/nodes/"+old, victim); err != nil {
		nm.restart(ctx, victim) // the same node back: the cluster stays whole
		return fmt.Errorf("remove %s: %w", old, err)
	}
	removed := time.Since(start)
	// The replacement takes the old node's ports: only once no shard
	// lists the old id there, so no raft message meant for it reaches
	// the new node.
	if err := nm.c.waitDropped(ctx, old, 2*time.Minute); err != nil {
		return err
	}
	if err := nm.c.fresh(ctx, victim); err != nil {
		return err
	}
	if err := nm.c.WaitPlaced(ctx, 3*time.Minute); err != nil {
		return err
	}
	rec.Note = fmt.Sprintf("%s removed after %v (gossip saw it dead), replaced by %s; replicas placed %v after the kill",
		old, removed.Round(time.Millisecond), victim.ID, time.Since(start).Round(time.Millisecond))
	return nil
}

func (nm *nemesis) decommission(ctx context.Context, rec *FaultRecord) error {
	if !nm.c.managed || nm.c.spare == nil {
		return errNotManaged
	}
	l, err := nm.leader(ctx)
	if err != nil {
		return err
	}
	rec.Node = l.ID
	spare := nm.c.spare
	if err := nm.c.fresh(ctx, spare); err != nil {
		return err
	}
	nm.c.Nodes = append(nm.c.Nodes, spare)
	nm.c.spare = nil
	added := spare.ID
	start := time.Now()
	// The longest wait between two acknowledged writes on the busy
	// shard, while the leader's replicas and leaderships move.
	gap, stopGaps := nm.gaps(ctx)
	err = nm.c.nodeCall(ctx, http.MethodPost, "/v1/cluster/nodes/"+l.ID+"/decommission", nil)
	if err == nil {
		wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		for nm.c.memberState(wctx, l.ID, l) != "left" {
			if pause(wctx, 200*time.Millisecond) != nil {
				err = fmt.Errorf("%s did not leave within 3m", l.ID)
				break
			}
		}
		cancel()
	}
	stopGaps()
	if err != nil {
		return err
	}
	rec.Recovery = *gap
	if err := nm.c.Stop(l); err != nil {
		return err
	}
	nm.c.Nodes = slices.DeleteFunc(nm.c.Nodes, func(n *Node) bool { return n == l })
	nm.c.spare = l
	if err := nm.c.WaitPlaced(ctx, 3*time.Minute); err != nil {
		return err
	}
	rec.Note = fmt.Sprintf("%s added, %s left %v after its decommission; longest write gap %v",
		added, l.ID, time.Since(start).Round(time.Millisecond), gap.Round(time.Millisecond))
	return nil
}

// gaps writes the probe counter one keyed increment after another, to any
// member, until stop is called, and keeps the longest time between two
// acknowledgements in *gap.
func (nm *nemesis) gaps(ctx context.Context) (gap *time.Duration, stop func()) {
	gap = new(time.Duration)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	addrs := nm.c.Addrs()
	go func() {
		defer close(done)
		last := time.Now()
		for i := 0; ctx.Err() == nil; i++ {
			actx, acancel := context.WithTimeout(ctx, 2*time.Second)
			req, _ := http.NewRequestWithContext(actx, http.MethodPost, "http://"+addrs[i%len(addrs)]+"/v1/counters/"+nm.probe+"/incr", nil)
			req.Header.Set("Idempotency-Key", fmt.Sprintf("gap-%d-%d", last.UnixNano(), i))
			resp, err := nm.hc.Do(req)
			acancel()
			if err != nil {
				continue
			}
			var ans json.RawMessage
			json.NewDecoder(resp.Body).Decode(&ans)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				now := time.Now()
				*gap = max(*gap, now.Sub(last))
				last = now
			}
		}
	}()
	return gap, func() { cancel(); <-done }
}

package resp

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"net"
	"strconv"
	"strings"

	"tally/placement"
)

// Router tells the listener where keys live, for cluster-aware clients:
// CLUSTER SLOTS, SHARDS and NODES, and -MOVED redirects. A node whose
// cluster places counters by slot implements it; without one the CLUSTER
// commands say the cluster has no slot placement.
type Router interface {
	// Topology is the cluster now: every shard's slot range, leader and
	// replicas, and every node's RESP address; an error when the cluster
	// does not place keys by slot.
	Topology() (Topology, error)
	// Owner is where a key's writes go: its slot, the RESP address of the
	// node that leads it (empty while it has no leader), whether this node
	// leads it (for a split counter: leads any of its sub-counters), and
	// whether this node holds a replica of it (for READONLY reads). ok is
	// false when the cluster does not place keys by slot.
	Owner(key string) (slot int, leader string, leads, hosts, ok bool)
}

// Topology describes the cluster to clients.
type Topology struct {
	Self   string // this node's id
	Nodes  []TopologyNode
	Shards []TopologyShard // shard s at index s
}

// TopologyNode is one member.
type TopologyNode struct {
	ID   string
	RESP string // host:port of its RESP listener
}

// TopologyShard is one shard: the slots it owns and its replicas.
type TopologyShard struct {
	First, Last int
	Leader      string   // node id; empty while there is none
	Replicas    []string // node ids, the leader among them
}

// Redirect says how a node answers a single-key command for a key that
// another node leads.
type Redirect int

const (
	// Forward serves it anyway, forwarding to the leader: plain clients
	// work against any node.
	Forward Redirect = iota
	// Moved answers -MOVED slot host:port, as Redis Cluster does:
	// cluster-aware clients (go-redis's ClusterClient, redis-cli -c,
	// redis-benchmark --cluster) learn the leader and go there directly.
	Moved
)

func init() {
	register(&spec{name: "cluster", arity: -2, run: cmdCluster})
}

// clusterID is the 40-hex-digit node name Redis Cluster clients expect,
// derived from tally's node id.
func clusterID(id string) string {
	sum := sha1.Sum([]byte(id))
	return hex.EncodeToString(sum[:])
}

func splitHostPort(addr string) (string, int) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr, 0
	}
	p, _ := strconv.Atoi(port)
	return host, p
}

func cmdCluster(_ context.Context, c *conn, args [][]byte) {
	sub := upper(args[1])
	if sub == "KEYSLOT" {
		if len(args) != 3 {
			c.wr.Error("ERR wrong number of arguments for 'cluster|keyslot' command")
			return
		}
		c.wr.Int(int64(placement.Slot(string(args[2]))))
		return
	}
	r := c.s.cfg.Router
	if r == nil {
		c.wr.Error("ERR This instance has cluster support disabled")
		return
	}
	t, err := r.Topology()
	if err != nil {
		c.wr.Error("ERR " + err.Error())
		return
	}
	addrs := map[string]string{}
	for _, n := range t.Nodes {
		addrs[n.ID] = n.RESP
	}
	switch sub {
	case "MYID":
		c.wr.BulkString(clusterID(t.Self))
	case "SLOTS":
		writeClusterSlots(c.wr, t, addrs)
	case "SHARDS":
		writeClusterShards(c.wr, t, addrs)
	case "NODES":
		c.wr.Verbatim(clusterNodes(t))
	case "INFO":
		c.wr.Verbatim(clusterInfo(t))
	default:
		c.wr.Error("ERR unknown subcommand '" + clip(args[1]) + "'. Try CLUSTER HELP.")
	}
}

// ordered returns a shard's replicas, its leader first (the "master"
// Redis Cluster clients send writes to); a shard without a leader lists
// its first replica there, whose redirect then corrects the client.
// Replicas on nodes without a known RESP address are left out.
func ordered(sh TopologyShard, addrs map[string]string) []string {
	out := make([]string, 0, len(sh.Replicas))
	if addrs[sh.Leader] != "" {
		out = append(out, sh.Leader)
	}
	for _, id := range sh.Replicas {
		if id != sh.Leader && addrs[id] != "" {
			out = append(out, id)
		}
	}
	return out
}

func writeClusterSlots(w *Writer, t Topology, addrs map[string]string) {
	w.Array(len(t.Shards))
	for _, sh := range t.Shards {
		ids := ordered(sh, addrs)
		w.Array(2 + len(ids))
		w.Int(int64(sh.First))
		w.Int(int64(sh.Last))
		for _, id := range ids {
			host, port := splitHostPort(addrs[id])
			w.Array(3)
			w.BulkString(host)
			w.Int(int64(port))
			w.BulkString(clusterID(id))
		}
	}
}

func writeClusterShards(w *Writer, t Topology, addrs map[string]string) {
	w.Array(len(t.Shards))
	for _, sh := range t.Shards {
		ids := ordered(sh, addrs)
		w.Map(2)
		w.BulkString("slots")
		w.Array(2)
		w.Int(int64(sh.First))
		w.Int(int64(sh.Last))
		w.BulkString("nodes")
		w.Array(len(ids))
		for i, id := range ids {
			host, port := splitHostPort(addrs[id])
			role := "replica"
			if i == 0 {
				role = "master"
			}
			w.Map(7)
			w.BulkString("id")
			w.BulkString(clusterID(id))
			w.BulkString("port")
			w.Int(int64(port))
			w.BulkString("ip")
			w.BulkString(host)
			w.BulkString("endpoint")
			w.BulkString(host)
			w.BulkString("role")
			w.BulkString(role)
			w.BulkString("replication-offset")
			w.Int(0)
			w.BulkString("health")
			w.BulkString("online")
		}
	}
}

// clusterNodes is CLUSTER NODES' text: every node as a master of the slot
// ranges of the shards it leads. A tally node leads some shards and
// follows others, which Redis's one-master-per-replica lines cannot say,
// so followers are left out; clients route writes by masters alone.
func clusterNodes(t Topology) string {
	var b strings.Builder
	for _, n := range t.Nodes {
		host, port := splitHostPort(n.RESP)
		flags := "master"
		if n.ID == t.Self {
			flags = "myself,master"
		}
		b.WriteString(clusterID(n.ID) + " " + host + ":" + strconv.Itoa(port) + "@" + strconv.Itoa(port) + " " + flags + " - 0 0 1 connected")
		for _, sh := range t.Shards {
			if sh.Leader == n.ID || (sh.Leader == "" && len(sh.Replicas) > 0 && sh.Replicas[0] == n.ID) {
				b.WriteString(" " + strconv.Itoa(sh.First) + "-" + strconv.Itoa(sh.Last))
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

func clusterInfo(t Topology) string {
	state := "ok"
	for _, sh := range t.Shards {
		if sh.Leader == "" {
			state = "fail"
		}
	}
	var b strings.Builder
	b.WriteString("cluster_enabled:1\r\n")
	b.WriteString("cluster_state:" + state + "\r\n")
	b.WriteString("cluster_slots_assigned:" + strconv.Itoa(placement.NumSlots) + "\r\n")
	b.WriteString("cluster_slots_ok:" + strconv.Itoa(placement.NumSlots) + "\r\n")
	b.WriteString("cluster_slots_pfail:0\r\ncluster_slots_fail:0\r\n")
	b.WriteString("cluster_known_nodes:" + strconv.Itoa(len(t.Nodes)) + "\r\n")
	b.WriteString("cluster_size:" + strconv.Itoa(len(t.Nodes)) + "\r\n")
	b.WriteString("cluster_current_epoch:1\r\ncluster_my_epoch:1\r\n")
	return b.String()
}

// redirect returns the -MOVED reply for a single-key command whose key
// this node should not serve, or "" to serve it here.
func (c *conn) redirect(cmd *command) string {
	r := c.s.cfg.Router
	if r == nil || c.s.cfg.Redirect != Moved || cmd.spec.first != 1 || cmd.spec.last != 1 || len(cmd.args) < 2 {
		return ""
	}
	slot, leader, leads, hosts, ok := r.Owner(string(cmd.args[1]))
	if !ok || leads || leader == "" || (c.stale && hosts && cmd.spec.readonly()) {
		return ""
	}
	return "MOVED " + strconv.Itoa(slot) + " " + leader
}

func (s *spec) readonly() bool {
	for _, f := range s.flags {
		if f == "readonly" {
			return true
		}
	}
	return false
}

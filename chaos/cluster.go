package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Node is one tallyd of the cluster under test.
type Node struct {
	ID     string
	HTTP   string // host:port
	Raft   string // cluster (raft) address, what the fault switch blocks
	RESP   string // Redis-protocol address
	Gossip string

	args    []string
	logPath string

	mu     sync.Mutex
	cmd    *exec.Cmd
	done   chan struct{} // closed when the process has exited
	paused bool
}

// Cluster is the system under test: tallyd processes this package started
// (managed) or a running cluster it attached to (faults limited to the
// transport switch, which needs --enable-faults on the nodes).
type Cluster struct {
	Nodes   []*Node // the members
	Shards  int
	Dir     string // data and logs of a managed cluster
	managed bool
	hc      *http.Client
	lazy    *lazyMount // the nodes' data dirs are on it (ClusterConfig.LazyFS)

	// Membership faults (membership.go) move nodes in and out. A managed
	// cluster has one spare slot of ports with no process, where a new
	// node starts; a slot whose node left becomes the spare.
	spare    *Node
	cfg      ClusterConfig
	dataRoot string
	nextID   int
}

// ClusterConfig describes a managed cluster.
type ClusterConfig struct {
	Bin               string // tallyd binary
	Dir               string // data dirs and logs go here
	Nodes             int
	Shards            int
	SnapshotThreshold uint64 // 0: tallyd's default
	LogLevel          string
	ExtraArgs         []string // more tallyd flags for every node
	// LazyFS, if set, is a tally-lazyfs binary: the nodes' data dirs are
	// then on one lazyfs mount (Dir/data over Dir/disk), so PowerLoss can
	// drop what they have not fsynced. Failing to mount it is a
	// *LazyFSError.
	LazyFS string
}

var errNotManaged = errors.New("this fault needs a cluster started by tally chaos (not --attach)")

// StartCluster starts cfg.Nodes tallyd processes on free loopback ports,
// with --enable-faults, and waits until every node is ready.
func StartCluster(ctx context.Context, cfg ClusterConfig) (*Cluster, error) {
	c := &Cluster{Shards: cfg.Shards, Dir: cfg.Dir, managed: true, hc: &http.Client{Timeout: 2 * time.Second}}
	dataRoot := cfg.Dir
	if cfg.LazyFS != "" {
		m, err := startLazyFS(ctx, cfg.LazyFS, cfg.Dir)
		if err != nil {
			return nil, err
		}
		c.lazy, dataRoot = m, m.mnt
	}
	// Every node joins all the others (the spare slot's too), so any of
	// them can restart alone.
	ports, err := freePorts(4 * (cfg.Nodes + 1)) // held together: all distinct
	if err != nil {
		c.Close()
		return nil, err
	}
	c.cfg, c.dataRoot, c.nextID = cfg, dataRoot, cfg.Nodes+1
	var slots []*Node
	for i := 0; i <= cfg.Nodes; i++ {
		ports := ports[4*i:]
		slots = append(slots, &Node{
			HTTP:   "127.0.0.1:" + strconv.Itoa(ports[0]),
			Raft:   "127.0.0.1:" + strconv.Itoa(ports[1]),
			RESP:   "127.0.0.1:" + strconv.Itoa(ports[3]),
			Gossip: "127.0.0.1:" + strconv.Itoa(ports[2]),
		})
	}
	c.Nodes, c.spare = slots[:cfg.Nodes], slots[cfg.Nodes]
	for i, n := range c.Nodes {
		c.setIdentity(n, fmt.Sprintf("n%d", i+1), cfg.Nodes)
	}
	for _, n := range c.Nodes {
		if err := c.Start(n); err != nil {
			c.Close()
			return nil, err
		}
	}
	if err := c.WaitReady(ctx, 3*time.Minute); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// setIdentity makes slot n the node id, with its own data dir and log,
// forming a cluster once expect members see each other.
func (c *Cluster) setIdentity(n *Node, id string, expect int) {
	cfg := c.cfg
	n.ID = id
	n.logPath = filepath.Join(cfg.Dir, id+".log")
	n.args = []string{cfg.Bin,
		"--id", n.ID, "--data-dir", filepath.Join(c.dataRoot, n.ID),
		"--http", n.HTTP, "--raft", n.Raft, "--gossip", n.Gossip, "--resp", n.RESP,
		"--bootstrap-expect", strconv.Itoa(expect), "--shards", strconv.Itoa(cfg.Shards),
		"--enable-faults",
	}
	var join []string
	for _, o := range append(slices.Clone(c.Nodes), c.spare) {
		if o != n && o != nil {
			join = append(join, o.Gossip)
		}
	}
	if len(join) > 0 {
		n.args = append(n.args, "--join", strings.Join(join, ","))
	}
	if cfg.SnapshotThreshold > 0 {
		n.args = append(n.args, "--snapshot-threshold", strconv.FormatUint(cfg.SnapshotThreshold, 10))
	}
	if cfg.LogLevel != "" {
		n.args = append(n.args, "--log-level", cfg.LogLevel)
	}
	n.args = append(n.args, cfg.ExtraArgs...)
}

// freePorts returns n distinct ports free on 127.0.0.1 for both TCP and
// UDP right now (memberlist needs both on its port).
func freePorts(n int) ([]int, error) {
	var out []int
	var held []io.Closer
	defer func() {
		for _, h := range held {
			h.Close()
		}
	}()
	for tries := 0; len(out) < n && tries < 100; tries++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			l.Close()
			continue
		}
		held = append(held, l, u)
		out = append(out, port)
	}
	if len(out) < n {
		return nil, errors.New("no free loopback ports")
	}
	return out, nil
}

// Attach uses a running cluster whose nodes serve /v1/faults (tallyd
// --enable-faults): one address per node.
func Attach(ctx context.Context, addrs []string, shards int) (*Cluster, error) {
	c := &Cluster{Shards: shards, hc: &http.Client{Timeout: 2 * time.Second}}
	for _, a := range addrs {
		var fa struct {
			Node string `json:"node"`
			Raft string `json:"raft"`
		}
		if err := c.getJSON(ctx, a, "/v1/faults", &fa); err != nil {
			return nil, fmt.Errorf("attach %s (its tallyd needs --enable-faults): %w", a, err)
		}
		c.Nodes = append(c.Nodes, &Node{ID: fa.Node, HTTP: a, Raft: fa.Raft})
	}
	if c.Shards == 0 {
		var info struct {
			Shards []json.RawMessage `json:"shards"`
		}
		if err := c.getJSON(ctx, addrs[0], "/v1/cluster", &info); err != nil {
			return nil, err
		}
		c.Shards = len(info.Shards)
	}
	return c, nil
}

// Start (re)starts n's process with its flags; its log is appended to.
func (c *Cluster) Start(n *Node) error {
	if !c.managed {
		return errNotManaged
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil && !exited(n.done) {
		return fmt.Errorf("%s is already running", n.ID)
	}
	lf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(n.args[0], n.args[1:]...)
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("start %s: %w", n.ID, err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		lf.Close()
		close(done)
	}()
	n.cmd, n.done, n.paused = cmd, done, false
	return nil
}

func exited(done chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// Running reports whether n's process is up (paused counts as up).
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd != nil && !exited(n.done)
}

// Kill SIGKILLs n and waits for the process to be gone.
func (c *Cluster) Kill(n *Node) error {
	if !c.managed {
		return errNotManaged
	}
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.paused = false
	n.mu.Unlock()
	if cmd == nil || exited(done) {
		return nil
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !exited(done) {
		return fmt.Errorf("kill %s: %w", n.ID, err)
	}
	<-done
	return nil
}

// Pause SIGSTOPs n; Resume SIGCONTs it.
func (c *Cluster) Pause(n *Node) error  { return c.signal(n, syscall.SIGSTOP, true) }
func (c *Cluster) Resume(n *Node) error { return c.signal(n, syscall.SIGCONT, false) }

func (c *Cluster) signal(n *Node, sig syscall.Signal, paused bool) error {
	if !c.managed {
		return errNotManaged
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil || exited(n.done) {
		return fmt.Errorf("%s is not running", n.ID)
	}
	if err := n.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signal %s: %w", n.ID, err)
	}
	n.paused = paused
	return nil
}

// Close SIGKILLs every process this cluster started (resuming paused ones
// is not needed: SIGKILL ends a stopped process too), then unmounts its
// lazyfs.
func (c *Cluster) Close() error {
	if !c.managed {
		return nil
	}
	for _, n := range c.slots() {
		c.Kill(n)
	}
	if c.lazy == nil {
		return nil
	}
	err := c.lazy.close()
	c.lazy = nil
	return err
}

// OnLazyFS reports whether the nodes' data dirs are on a lazyfs mount.
func (c *Cluster) OnLazyFS() bool { return c.lazy != nil }

// PowerLoss drops every write the nodes have not fsynced (the nodes
// should be dead) and returns how many files and bytes were lost.
func (c *Cluster) PowerLoss(ctx context.Context) (files int, bytes int64, err error) {
	if c.lazy == nil {
		return 0, 0, errors.New("power loss needs the nodes' data dirs on lazyfs (ClusterConfig.LazyFS)")
	}
	a, err := c.lazy.command(ctx, "drop")
	return a.Files, a.Bytes, err
}

// slots are the members and the spare slot.
func (c *Cluster) slots() []*Node {
	if c.spare == nil {
		return c.Nodes
	}
	return append(slices.Clone(c.Nodes), c.spare)
}

// Addrs are the HTTP addresses of every slot, the spare's included (a
// client that finds it down goes on to the next address): the clients
// keep them for the whole campaign while nodes come and go.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.slots() {
		out = append(out, n.HTTP)
	}
	return out
}

// RESPAddrs are the slots' Redis-protocol addresses, nil where any is
// unknown (an attached cluster).
func (c *Cluster) RESPAddrs() []string {
	var out []string
	for _, n := range c.slots() {
		if n.RESP == "" {
			return nil
		}
		out = append(out, n.RESP)
	}
	return out
}

// Node returns the node with the given id, or nil.
func (c *Cluster) Node(id string) *Node {
	for _, n := range c.Nodes {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// WaitReady polls every node's /readyz until all answer 200.
func (c *Cluster) WaitReady(ctx context.Context, within time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	for _, n := range c.Nodes {
		for {
			if c.managed && !n.Running() {
				return fmt.Errorf("%s exited; see %s", n.ID, n.logPath)
			}
			if err := c.getJSON(ctx, n.HTTP, "/readyz", nil); err == nil {
				break
			}
			if err := pause(ctx, 20*time.Millisecond); err != nil {
				return fmt.Errorf("%s not ready within %v", n.ID, within)
			}
		}
	}
	return nil
}

// pause waits d (pacing between polls of a condition), or until ctx ends.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Leader returns the id of shard s's leader as the first answering node
// other than skip reports it ("" if none knows one).
func (c *Cluster) Leader(ctx context.Context, s int, skip string) string {
	for _, n := range c.Nodes {
		if n.ID == skip || (c.managed && !n.Running()) {
			continue
		}
		var info struct {
			Shards []struct {
				ID     int    `json:"id"`
				Leader string `json:"leader"`
			} `json:"shards"`
		}
		if err := c.getJSON(ctx, n.HTTP, "/v1/cluster", &info); err != nil {
			continue
		}
		for _, sh := range info.Shards {
			if sh.ID == s && sh.Leader != "" {
				return sh.Leader
			}
		}
	}
	return ""
}

// DebugShard is one replica in /v1/debug/shards.
type DebugShard struct {
	ID            int    `json:"id"`
	Leader        bool   `json:"leader"`
	AppliedIndex  uint64 `json:"applied_index"`
	Digest        string `json:"digest"`
	Counters      int    `json:"counters"`
	SnapshotIndex uint64 `json:"snapshot_index"`
}

// Replicas returns n's local replicas.
func (c *Cluster) Replicas(ctx context.Context, n *Node) (map[int]DebugShard, error) {
	var ans struct {
		Shards []DebugShard `json:"shards"`
	}
	if err := c.getJSON(ctx, n.HTTP, "/v1/debug/shards", &ans); err != nil {
		return nil, err
	}
	out := map[int]DebugShard{}
	for _, s := range ans.Shards {
		out[s.ID] = s
	}
	return out, nil
}

// Partition cuts n off from every other node's cluster traffic; Heal
// undoes every cut on every node.
func (c *Cluster) Partition(ctx context.Context, n *Node) error {
	var others []string
	for _, o := range c.Nodes {
		if o != n {
			others = append(others, o.Raft)
		}
	}
	return c.postJSON(ctx, n.HTTP, "/v1/faults", map[string]any{"block": others})
}

func (c *Cluster) Heal(ctx context.Context) error {
	var first error
	for _, n := range c.Nodes {
		if c.managed && !n.Running() {
			continue
		}
		if err := c.postJSON(ctx, n.HTTP, "/v1/faults", map[string]any{"heal": true}); err != nil && first == nil {
			first = fmt.Errorf("heal %s: %w", n.ID, err)
		}
	}
	return first
}

func (c *Cluster) getJSON(ctx context.Context, addr, path string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	return c.do(req, out)
}

func (c *Cluster) postJSON(ctx context.Context, addr, path string, body any) error {
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+path, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return c.do(req, nil)
}

func (c *Cluster) do(req *http.Request, out any) error { return c.doWith(req, c.hc, out) }

func (c *Cluster) doWith(req *http.Request, hc *http.Client, out any) error {
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", req.Method, req.URL.Path, resp.StatusCode, bytes.TrimSpace(data))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

package node_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tally/auth"
	"tally/client"
	"tally/internal/testcluster"
	"tally/keyring"
	"tally/node"
	"tally/tlsconf"
)

const (
	readToken  = "read-token-0123456789"
	writeToken = "write-token-0123456789"
	adminToken = "admin-token-0123456789"
)

// secured is tally's full security setup for in-process nodes: TLS from
// one CA, a gossip key, and tokens of every role.
type secured struct {
	tls    *tlsconf.Store
	keys   [][]byte
	tokens *auth.Tokens
}

func newSecured(t *testing.T) secured {
	t.Helper()
	f, err := tlsconf.Generate(t.TempDir(), []string{"127.0.0.1"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	st, err := tlsconf.Load(f)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keyring.Parse([]byte(keyring.New()))
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := auth.Parse([]byte(readToken + " read\n" + writeToken + " write\n" + adminToken + " admin\n"))
	if err != nil {
		t.Fatal(err)
	}
	return secured{st, keys, tokens}
}

func (s secured) apply(c *node.Config) {
	c.TLS, c.GossipKeys, c.Tokens = s.tls, s.keys, s.tokens
}

// call sends one request with token (none when "") and returns its status.
func call(t *testing.T, hc *http.Client, method, url, token string) int {
	t.Helper()
	body := ""
	if strings.HasSuffix(url, "/split") {
		body = `{"n": 2}`
	}
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestSecureClusterRefusesWhatItShould: with TLS, a gossip key and tokens,
// every request without the right token, and every plaintext one, is
// refused and changes nothing, while the right tokens count exactly, over
// HTTP and RESP.
func TestSecureClusterRefusesWhatItShould(t *testing.T) {
	sec := newSecured(t)
	tc := testcluster.StartRESP(t, 3, 4, 0, sec.apply)
	hc := testcluster.ClientFor(tc.Nodes[0])
	base := testcluster.BaseURL(tc.Nodes[1])
	incr := base + "/v1/counters/c/incr"

	for _, c := range []struct {
		what, method, url, token string
		want                     int
	}{
		{"no token", "POST", incr, "", 401},
		{"unknown token", "POST", incr, "not-a-token-0123456789", 401},
		{"read token writing", "POST", incr, readToken, 403},
		{"write token splitting", "POST", base + "/v1/counters/c/split", writeToken, 403},
		{"write token decommissioning", "POST", base + "/v1/cluster/nodes/n3/decommission", writeToken, 403},
		{"no token reading", "GET", base + "/v1/counters/c", "", 401},
		{"no token on metrics", "GET", base + "/metrics", "", 401},
		{"no token on an unknown route", "GET", base + "/v1/nothing", "", 401},
		{"read token reading", "GET", base + "/v1/counters/c", readToken, 200},
		{"read token on cluster", "GET", base + "/v1/cluster", readToken, 200},
		{"healthz is open", "GET", base + "/healthz", "", 200},
		{"readyz is open", "GET", base + "/readyz", "", 200},
	} {
		if got := call(t, hc, c.method, c.url, c.token); got != c.want {
			t.Errorf("%s: %d, want %d", c.what, got, c.want)
		}
	}

	// Plaintext to the TLS port: refused before any handler runs.
	plain := &http.Client{Timeout: 10 * time.Second}
	if resp, err := plain.Post("http://"+tc.Nodes[1].HTTPAddr()+"/v1/counters/c/incr", "", nil); err == nil {
		resp.Body.Close()
		if resp.StatusCode != 400 {
			t.Errorf("plaintext HTTP to the TLS port: %d, want 400", resp.StatusCode)
		}
	}

	// RESP: NOAUTH, WRONGPASS and NOPERM in Redis's words.
	ctx := testcluster.Ctx(t, time.Minute)
	rtls := sec.tls.ClientTLS()
	rtls.ServerName = "127.0.0.1"
	addr := tc.Nodes[2].RESPAddr()
	respWith := func(password string) *redis.Client {
		c := redis.NewClient(&redis.Options{Addr: addr, Password: password, TLSConfig: rtls, MaxRetries: -1, Protocol: 2})
		t.Cleanup(func() { c.Close() })
		return c
	}
	if err := respWith("").Incr(ctx, "c").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Errorf("RESP without AUTH: %v, want NOAUTH", err)
	}
	if err := respWith("not-a-token-0123456789").Incr(ctx, "c").Err(); err == nil || !strings.HasPrefix(err.Error(), "WRONGPASS") {
		t.Errorf("RESP with a wrong token: %v, want WRONGPASS", err)
	}
	if err := respWith(readToken).Incr(ctx, "c").Err(); err == nil || !strings.HasPrefix(err.Error(), "NOPERM") {
		t.Errorf("RESP INCR with a read token: %v, want NOPERM", err)
	}
	if v, err := respWith(readToken).Get(ctx, "c").Result(); err != redis.Nil && (err != nil || v != "0") {
		t.Errorf("RESP GET with a read token: %q %v", v, err)
	}
	plainRESP := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 5 * time.Second, ReadTimeout: 5 * time.Second})
	defer plainRESP.Close()
	if err := plainRESP.Ping(ctx).Err(); err == nil {
		t.Error("plaintext RESP to the TLS port answered")
	}

	// Nothing above changed the counter; the right tokens count exactly.
	const n = 20
	writer := respWith(writeToken)
	for i := 0; i < n; i++ {
		if i%2 == 0 {
			if err := writer.Incr(ctx, "c").Err(); err != nil {
				t.Fatal(err)
			}
		} else if got := call(t, hc, "POST", incr, writeToken); got != 200 {
			t.Fatalf("incr with a write token: %d", got)
		}
	}
	if v, err := writer.Get(ctx, "c").Int64(); err != nil || v != n {
		t.Fatalf("c = %d (%v), want %d", v, err, n)
	}
	if got := call(t, hc, "POST", base+"/v1/counters/c/split", adminToken); got != 200 {
		t.Errorf("split with an admin token: %d", got)
	}
}

// listed says whether id is a member in any live node's view, or a
// replica or learner of any shard.
func listed(tc *testcluster.Cluster, id string) bool {
	for _, n := range tc.Nodes[:3] {
		st := n.ClusterStatus()
		for _, m := range st.Members {
			if m.ID == id {
				return true
			}
		}
		for _, s := range st.Shards {
			if slices.Contains(s.Replicas, id) || slices.Contains(s.Learners, id) {
				return true
			}
		}
	}
	return false
}

// TestNodesWithoutTheClusterSecretsNeverJoin: a node whose certificate
// another CA signed (even holding the gossip key), and a node with the
// wrong gossip key (even holding a good certificate), are never members;
// a node with both joins, which shows the test would see a join.
func TestNodesWithoutTheClusterSecretsNeverJoin(t *testing.T) {
	sec := newSecured(t)
	tc := testcluster.StartWith(t, 3, 4, func(c *node.Config) {
		sec.apply(c)
		c.PlaceInterval = 200 * time.Millisecond
	})
	other := newSecured(t)
	join := []string{tc.Cfgs[0].GossipAddr}
	start := func(id string, tune func(*node.Config)) *node.Node {
		cfg := tc.Cfgs[0]
		cfg.ID, cfg.DataDir, cfg.Join, cfg.BootstrapExpect = id, t.TempDir(), join, 4
		cfg.HTTPAddr, cfg.RaftAddr, cfg.GossipAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		tune(&cfg)
		return testcluster.StartNode(t, cfg)
	}
	start("rogue-ca", func(c *node.Config) { c.TLS = other.tls })
	start("rogue-key", func(c *node.Config) { c.GossipKeys = other.keys })
	// Without a certificate of the CA, claiming a member's cluster address
	// (whose real owner passes the TLS check) does not get it in either.
	start("rogue-addr", func(c *node.Config) { c.TLS, c.AdvertiseRaft = other.tls, tc.Nodes[1].RaftAddr() })

	// Raw garbage and a never-finished handshake on a node's cluster port.
	for _, payload := range []string{"\x16\x03\x01\xff\xffgarbage", "*3\r\n$3\r\nSET\r\n", ""} {
		nc, err := net.Dial("tcp", tc.Nodes[0].RaftAddr())
		if err != nil {
			t.Fatal(err)
		}
		nc.Write([]byte(payload))
		defer nc.Close()
	}

	// Both stay out while the cluster places replicas and counts.
	var addrs []string
	for _, n := range tc.Nodes {
		addrs = append(addrs, testcluster.BaseURL(n))
	}
	c := client.New(addrs, client.WithTLS(sec.tls.ClientTLS()), client.WithToken(writeToken))
	deadline := time.Now().Add(8 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		if _, err := c.Incr(testcluster.Ctx(t, 30*time.Second), fmt.Sprintf("k%d", i%8), 1); err != nil {
			t.Fatalf("incr during the attempts: %v", err)
		}
		for _, id := range []string{"rogue-ca", "rogue-key", "rogue-addr"} {
			if listed(tc, id) {
				t.Fatalf("%s is listed in the cluster", id)
			}
		}
	}

	// With both secrets a node joins and gets replicas.
	good := start("n4", func(*node.Config) {})
	tc.Nodes, tc.Cfgs = append(tc.Nodes, good), append(tc.Cfgs, good.Config())
	testcluster.WaitFor(t, "n4 to host a replica", 2*time.Minute, func() bool { return listed(tc, "n4") && hosts(tc.Nodes[0], "n4") })
}

func hosts(n *node.Node, id string) bool {
	for _, s := range n.ClusterStatus().Shards {
		if slices.Contains(s.Replicas, id) {
			return true
		}
	}
	return false
}

// TestGossipKeyRotatesLive: the three reloads of a key rotation (add the
// new key, make it primary, drop the old) on every node keep the members
// together, and afterwards a node with only the new key joins while one
// with only the old key cannot.
func TestGossipKeyRotatesLive(t *testing.T) {
	sec := newSecured(t)
	tc := testcluster.StartWith(t, 3, 2, sec.apply)
	oldKey := sec.keys[0]
	fresh, err := keyring.Parse([]byte(keyring.New()))
	if err != nil {
		t.Fatal(err)
	}
	newKey := fresh[0]
	for _, step := range [][][]byte{{oldKey, newKey}, {newKey, oldKey}, {newKey}} {
		for _, n := range tc.Nodes {
			if err := n.SetGossipKeys(step); err != nil {
				t.Fatal(err)
			}
		}
	}
	start := func(id string, key []byte) {
		cfg := tc.Cfgs[0]
		cfg.ID, cfg.DataDir, cfg.Join, cfg.BootstrapExpect = id, t.TempDir(), []string{tc.Nodes[1].GossipAddr()}, 4
		cfg.HTTPAddr, cfg.RaftAddr, cfg.GossipAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
		cfg.GossipKeys = [][]byte{key}
		testcluster.StartNode(t, cfg)
	}
	start("stale", oldKey)
	start("n4", newKey)
	testcluster.WaitFor(t, "n4 to be a member everywhere", time.Minute, func() bool {
		for _, n := range tc.Nodes {
			found := false
			for _, m := range n.ClusterStatus().Members {
				found = found || (m.ID == "n4" && m.State == "alive")
			}
			if !found {
				return false
			}
		}
		return true
	})
	for _, n := range tc.Nodes {
		for _, m := range n.ClusterStatus().Members {
			if m.ID == "stale" {
				t.Fatalf("%s lists a node that has only the retired key", n.ID())
			}
			if m.State != "alive" {
				t.Fatalf("%s sees %s %s after the rotation", n.ID(), m.ID, m.State)
			}
		}
	}
}

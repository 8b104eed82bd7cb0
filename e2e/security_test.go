package e2e

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tally/client"
	"tally/tlsconf"
)

// secureEnv is a cluster from `cluster.sh up --secure`, with what a user
// of it holds: the CA and the tokens.
type secureEnv struct {
	*env
	runDir, certs string
	tokens        map[string]string // role → token
	hc            *http.Client      // trusts the CA
	tls           *tls.Config
}

func (e *env) runDir() string {
	for _, v := range e.vars {
		if d, ok := strings.CutPrefix(v, "TALLY_RUN_DIR="); ok {
			return d
		}
	}
	return ""
}

func readTokens(t *testing.T, path string) map[string]string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) == 2 && !strings.HasPrefix(f[0], "#") {
			out[f[1]] = f[0]
		}
	}
	return out
}

// status is the HTTP status of one request, 0 when there is none.
func (s *secureEnv) status(method, url, token, body string) int {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return 0
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		return 0
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// members are the member ids node 0 lists.
func (s *secureEnv) members(t *testing.T) []string {
	t.Helper()
	req, _ := http.NewRequest("GET", "https://"+s.addrs[0][len("https://"):]+"/v1/cluster", nil)
	req.Header.Set("Authorization", "Bearer "+s.tokens["admin"])
	resp, err := s.hc.Do(req)
	if err != nil {
		t.Fatalf("cluster state: %v", err)
	}
	defer resp.Body.Close()
	var st struct {
		Members []struct{ ID string }
		Shards  []struct{ Replicas, Learners []string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("cluster state: %v", err)
	}
	var ids []string
	for _, m := range st.Members {
		ids = append(ids, m.ID)
	}
	for _, sh := range st.Shards {
		ids = append(ids, sh.Replicas...)
		ids = append(ids, sh.Learners...)
	}
	return ids
}

// startRogue runs a tallyd that tries to join the cluster with the given
// security files, and kills it when the test ends.
func (s *secureEnv) startRogue(t *testing.T, id, certDir, gossipKey string) {
	t.Helper()
	bin := mustBin(t, s.env)
	_, gport, _ := strings.Cut(s.addrs[0][len("https://"):], ":")
	p, _ := strconv.Atoi(gport)
	logf, err := os.Create(filepath.Join(s.runDir, id+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "tallyd"), "--id", id, "--data-dir", filepath.Join(s.runDir, id),
		"--http", "127.0.0.1:0", "--raft", "127.0.0.1:0", "--gossip", "127.0.0.1:0", "--resp", "",
		"--join", fmt.Sprintf("127.0.0.1:%d", p+2), "--bootstrap-expect", "4",
		"--tls-cert", filepath.Join(certDir, "node.crt"), "--tls-key", filepath.Join(certDir, "node.key"), "--tls-ca", filepath.Join(certDir, "ca.crt"),
		"--gossip-key-file", gossipKey, "--auth-token-file", filepath.Join(s.certs, "tokens"))
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait(); logf.Close() })
}

func (s *secureEnv) pids(t *testing.T) []int {
	t.Helper()
	var out []int
	for i := range s.addrs {
		b, err := os.ReadFile(filepath.Join(s.runDir, fmt.Sprintf("n%d.pid", i+1)))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		out = append(out, pid)
	}
	return out
}

func rssKiB(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

// TestSecureClusterUnderAttack runs `cluster.sh up --secure` and tries
// every attack of the README's table against it while clients count:
// each is refused or contained, and the counts stay exact. Then it
// rotates the tokens and the node certificate with SIGHUP under load.
func TestSecureClusterUnderAttack(t *testing.T) {
	e := newEnv(t, 3, 4)
	out := e.mustScript("up", "3", "--secure")
	if !strings.Contains(out, "TALLY_TOKEN=") {
		t.Fatalf("up --secure printed no token:\n%s", out)
	}
	s := &secureEnv{env: e, runDir: e.runDir()}
	s.certs = filepath.Join(s.runDir, "certs")
	s.tokens = readTokens(t, filepath.Join(s.certs, "tokens"))
	cfg, err := tlsconf.ClientConfig(filepath.Join(s.certs, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	s.tls = cfg
	s.hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg.Clone()}}
	plainAddrs := e.addrs
	e.addrs = nil
	for _, a := range plainAddrs {
		e.addrs = append(e.addrs, "https://"+a)
	}
	e.opts = []client.Option{client.WithTLS(cfg), client.WithToken(s.tokens["write"])}
	respAddr := func(i int) string {
		_, p, _ := strings.Cut(plainAddrs[i], ":")
		n, _ := strconv.Atoi(p)
		return "127.0.0.1:" + strconv.Itoa(n+3)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	names := []string{"hot", "hot", "a", "b", "c"}
	led := &ledger{acked: map[string]int64{}, unknown: map[string]int64{}}
	stop := make(chan struct{})
	writers := e.load(ctx, 8, names, led, stop)
	waitAcks(t, led, 200, 2*time.Minute)

	row := func(attack, expected, seen string, ok bool) {
		t.Helper()
		if !ok {
			t.Errorf("%s: want %s, saw %s", attack, expected, seen)
		}
		t.Logf("| %s | %s | %s |", attack, expected, seen)
	}
	incr := e.addrs[1] + "/v1/counters/attacked/incr"

	// Plaintext to the TLS ports.
	plain := &http.Client{Timeout: 10 * time.Second}
	code := 0
	if resp, err := plain.Post("http://"+plainAddrs[1]+"/v1/counters/attacked/incr", "", nil); err == nil {
		code = resp.StatusCode
		resp.Body.Close()
	}
	row("plaintext HTTP to the TLS port", "400, nothing applied", fmt.Sprint(code), code == 400)
	pr := redis.NewClient(&redis.Options{Addr: respAddr(0), MaxRetries: -1, DialTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second})
	perr := pr.Incr(ctx, "attacked").Err()
	pr.Close()
	row("plaintext RESP to the TLS port", "connection closed", fmt.Sprint(perr), perr != nil)

	// Tokens.
	for _, c := range []struct {
		attack, token string
		want          int
	}{
		{"no token", "", 401},
		{"wrong token", "not-a-token-of-this-cluster", 401},
		{"read token writing", s.tokens["read"], 403},
	} {
		got := s.status("POST", incr, c.token, "")
		row(c.attack+" (HTTP)", strconv.Itoa(c.want), strconv.Itoa(got), got == c.want)
	}
	got := s.status("POST", e.addrs[0]+"/v1/counters/hot/split", s.tokens["write"], `{"n": 2}`)
	row("write token splitting (HTTP)", "403", strconv.Itoa(got), got == 403)
	rtls := s.tls.Clone()
	rtls.ServerName = "127.0.0.1"
	for _, c := range []struct{ attack, password, want string }{
		{"no token (RESP)", "", "NOAUTH"}, {"wrong token (RESP)", "not-a-token-of-this-cluster", "WRONGPASS"}, {"read token writing (RESP)", s.tokens["read"], "NOPERM"},
	} {
		rc := redis.NewClient(&redis.Options{Addr: respAddr(2), Password: c.password, TLSConfig: rtls, MaxRetries: -1})
		err := rc.Incr(ctx, "attacked").Err()
		rc.Close()
		row(c.attack, c.want, fmt.Sprint(err), err != nil && strings.HasPrefix(err.Error(), c.want))
	}

	// Nodes without the cluster's secrets.
	other := filepath.Join(t.TempDir(), "other")
	if out, err := exec.Command(filepath.Join(mustBin(t, e), "tally"), "certs", "init", other, "--hosts", "127.0.0.1").CombinedOutput(); err != nil {
		t.Fatalf("certs init: %v\n%s", err, out)
	}
	s.startRogue(t, "rogue-ca", other, filepath.Join(s.certs, "gossip.key"))
	s.startRogue(t, "rogue-key", s.certs, filepath.Join(other, "gossip.key"))

	// Garbage on the cluster ports, and 5,000 idle and half-sent client
	// connections, held while the clients count.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	raftPort := func(i int) string {
		_, p, _ := strings.Cut(plainAddrs[i], ":")
		n, _ := strconv.Atoi(p)
		return strconv.Itoa(n + 1)
	}
	var garbage []net.Conn
	for i := 0; i < 300; i++ {
		if c, err := net.Dial("tcp", "127.0.0.1:"+raftPort(i%3)); err == nil {
			c.Write([]byte("\x16\x03\x01\x7f\xffgarbage\r\n*3\r\n$3\r\nSET\r\n"))
			garbage = append(garbage, c)
		}
	}
	rssBefore := int64(0)
	for _, pid := range s.pids(t) {
		rssBefore += rssKiB(pid)
	}
	// The clients' rate for a few seconds before and while the connections
	// are held, for the table (a figure, not a pass/fail line).
	rate := func() float64 {
		a, start := led.total(), time.Now()
		time.Sleep(3 * time.Second)
		return float64(led.total()-a) / time.Since(start).Seconds()
	}
	rateBefore := rate()
	for i := 0; i < 5000; i++ {
		_, p, _ := strings.Cut(plainAddrs[i%3], ":")
		port, _ := strconv.Atoi(p)
		var c net.Conn
		var err error
		switch i % 4 {
		case 0: // idle HTTP: not even a handshake
			c, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		case 1: // half-sent HTTP request
			c, err = tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port), rtls)
			if err == nil {
				_, err = c.Write([]byte("POST /v1/counters/attacked/incr HTTP/1.1\r\nHost: n\r\nContent-Le"))
			}
		case 2: // idle RESP
			c, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port+3))
		case 3: // half-sent RESP command
			c, err = tls.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port+3), rtls)
			if err == nil {
				_, err = c.Write([]byte("*2\r\n$4\r\nINCR\r\n$8\r\natta"))
			}
		}
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		held = append(held, c)
	}
	waitAcks(t, led, 300, 2*time.Minute)
	rateDuring := rate()
	rssDuring := int64(0)
	for _, pid := range s.pids(t) {
		rssDuring += rssKiB(pid)
	}
	closed := 0
	for _, c := range garbage {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		// Whatever the node sends (a TLS alert), it must then hang up: EOF
		// or a reset, not the deadline.
		if _, err := io.Copy(io.Discard, c); !errors.Is(err, os.ErrDeadlineExceeded) {
			closed++
		}
		c.Close()
	}
	row("raw garbage on the cluster ports (300 connections)", "all closed by the node", fmt.Sprintf("%d closed", closed), closed == len(garbage))
	row("5,000 idle and half-sent connections to HTTP and RESP", "clients keep counting",
		fmt.Sprintf("%.0f incr/s before, %.0f while held; the 3 nodes' RSS +%d MiB", rateBefore, rateDuring, (rssDuring-rssBefore)/1024), rateDuring > 0)
	for _, c := range held {
		c.Close()
	}
	held = nil

	// The rogue nodes had all this time to join; watch a while longer.
	seen := map[string]bool{}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(500 * time.Millisecond) {
		for _, id := range s.members(t) {
			seen[id] = true
		}
	}
	ids := slices.Sorted(maps.Keys(seen))
	row("node with another CA's certificate (and the gossip key)", "never a member", "members "+strings.Join(ids, " "), !seen["rogue-ca"])
	row("node with the wrong gossip key (and a good certificate)", "never a member", "members "+strings.Join(ids, " "), !seen["rogue-key"])
	if g := s.status("GET", e.addrs[0]+"/v1/counters/attacked", s.tokens["read"], ""); g != 200 {
		t.Fatalf("read attacked: %d", g)
	}
	ac := client.New(e.addrs, client.WithTLS(s.tls), client.WithToken(s.tokens["read"]))
	cv, err := ac.Get(ctx, "attacked", client.Linearizable)
	row("the counter every refused write aimed at", "0", fmt.Sprint(cv.Value), err == nil && cv.Value == 0)

	// SIGHUP: a new write token replaces the old, and a new certificate
	// from the same CA is served, while the clients keep counting with a
	// token the rotation keeps.
	newWrite := "rotated-write-token-0123456789"
	tokens := fmt.Sprintf("%s admin\n%s write\n%s read\n", s.tokens["admin"], newWrite, s.tokens["read"])
	if err := os.WriteFile(filepath.Join(s.certs, "tokens.new"), []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(s.certs, "tokens.new"), filepath.Join(s.certs, "tokens")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(filepath.Join(mustBin(t, e), "tally"), "certs", "node", s.certs, "rotated", "--hosts", "127.0.0.1").CombinedOutput(); err != nil {
		t.Fatalf("certs node: %v\n%s", err, out)
	}
	for _, f := range []string{"crt", "key"} {
		if err := os.Rename(filepath.Join(s.certs, "rotated."+f), filepath.Join(s.certs, "node."+f)); err != nil {
			t.Fatal(err)
		}
	}
	servedSerial := func() string {
		c, err := tls.Dial("tcp", plainAddrs[0], rtls)
		if err != nil {
			return "dial: " + err.Error()
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	oldSerial := servedSerial()
	for _, pid := range s.pids(t) {
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.status("POST", incr, newWrite, "") != 200 || s.status("POST", incr, s.tokens["write"], "") != 401 || servedSerial() == oldSerial {
		if time.Now().After(deadline) {
			t.Fatalf("after SIGHUP: new token %d, old token %d, serial %s (was %s)", s.status("POST", incr, newWrite, ""), s.status("POST", incr, s.tokens["write"], ""), servedSerial(), oldSerial)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("SIGHUP: the new write token works, the old one is refused, and a new certificate is served")

	// The load used the old write token: it now meets 401s, which its
	// client reports as failures, not as counted. Stop it and check.
	close(stop)
	writers.Wait()
	c := client.New(e.addrs, client.WithTLS(s.tls), client.WithToken(s.tokens["read"]))
	led.mu.Lock()
	defer led.mu.Unlock()
	var total int64
	for _, name := range []string{"hot", "a", "b", "c"} {
		cv, err := c.Get(ctx, name, client.Linearizable)
		if err != nil {
			t.Fatalf("read %s: %v", name, err)
		}
		acked, unknown := led.acked[name], led.unknown[name]
		if cv.Value < acked || cv.Value > acked+unknown {
			t.Errorf("%s = %d; acknowledged %d, unknown %d", name, cv.Value, acked, unknown)
		}
		total += acked
	}
	t.Logf("%d increments acknowledged through it all, every one counted once", total)
}

func mustBin(t *testing.T, e *env) string {
	t.Helper()
	for _, v := range e.vars {
		if b, ok := strings.CutPrefix(v, "TALLY_BIN="); ok {
			return b
		}
	}
	t.Fatal("no TALLY_BIN")
	return ""
}

func (l *ledger) total() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var s int64
	for _, v := range l.acked {
		s += v
	}
	return s
}

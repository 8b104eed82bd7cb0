package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// server is a fake tallyd that answers from fixed data and records what it
// was asked.
type server struct {
	*httptest.Server
	mu   sync.Mutex
	last *http.Request
	body string
}

func newServer(t *testing.T) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewServer(http.HandlerFunc(s.handle))
	t.Cleanup(s.Close)
	return s
}

func (s *server) handle(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.last, s.body = r, string(body)
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	path := r.URL.Path
	switch {
	case path == "/v1/cluster":
		io.WriteString(w, `{"node":"n1","members":[{"id":"n1","http":"127.0.0.1:7070","state":"active","health":"alive"},{"id":"n20","http":"127.0.0.1:7080","state":"leaving","health":"dead"}],`+
			`"shards":[{"id":0,"leader":"n20","replicas":["n1","n20"],"learners":["n3"],"applied_index":123},{"id":1,"leader":"","replicas":["n1"],"learners":[],"applied_index":7}]}`)
	case path == "/v1/counters/hang/incr":
		conn, _, _ := w.(http.Hijacker).Hijack()
		conn.Close()
	case path == "/v1/counters/full/incr":
		w.WriteHeader(409)
		io.WriteString(w, `{"error":{"code":"overflow","message":"increment would overflow","value":9223372036854775807}}`)
	case path == "/v1/cluster/nodes/n2/decommission" && r.Method == "POST":
		io.WriteString(w, `{"id":"n2","state":"leaving"}`)
	case path == "/v1/cluster/nodes/n3" && r.Method == "DELETE":
		w.WriteHeader(409)
		io.WriteString(w, `{"error":{"code":"membership_refused","message":"node n3 is alive; decommission it instead"}}`)
	case path == "/v1/counters/shrunk/split":
		w.WriteHeader(409)
		io.WriteString(w, `{"error":{"code":"split_shrink","message":"the counter is split 6 ways; a split factor can only grow","value":6}}`)
	case strings.HasSuffix(path, "/split"):
		var req struct{ N int }
		json.Unmarshal(body, &req)
		fmt.Fprintf(w, `{"name":%q,"split":%d}`, strings.TrimSuffix(strings.TrimPrefix(path, "/v1/counters/"), "/split"), req.N)
	case strings.HasSuffix(path, "/incr") || strings.HasSuffix(path, "/decr"):
		name := strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(path, "/v1/counters/"), "/incr"), "/decr")
		exact := name != "split"
		fmt.Fprintf(w, `{"name":%q,"value":41,"exact":%v}`, name, exact)
	case strings.HasPrefix(path, "/v1/counters/"):
		fmt.Fprintf(w, `{"name":%q,"value":41,"shards":[3]}`, strings.TrimPrefix(path, "/v1/counters/"))
	default:
		w.WriteHeader(404)
		io.WriteString(w, `{"error":{"code":"not_found","message":"no such route"}}`)
	}
}

// request returns the last request: its escaped path and query, key, body.
func (s *server) request() (path, query, key, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil {
		return
	}
	return s.last.URL.EscapedPath(), s.last.URL.RawQuery, s.last.Header.Get("Idempotency-Key"), s.body
}

// tally runs the CLI in-process with TALLY_ADDR pointing at s.
func tally(s *server, args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	env := func(k string) string {
		if k == "TALLY_ADDR" && s != nil {
			return strings.TrimPrefix(s.URL, "http://")
		}
		return ""
	}
	code = run(args, &out, &errOut, env)
	return code, out.String(), errOut.String()
}

func check(t *testing.T, gotCode int, gotOut, gotErr string, code int, out, errOut string) {
	t.Helper()
	if gotCode != code || gotOut != out || gotErr != errOut {
		t.Errorf("got exit %d\nstdout %q\nstderr %q\nwant exit %d\nstdout %q\nstderr %q", gotCode, gotOut, gotErr, code, out, errOut)
	}
}

func TestGet(t *testing.T) {
	s := newServer(t)
	code, out, errOut := tally(s, "get", "likes:post:42")
	check(t, code, out, errOut, 0, "likes:post:42 = 41\n", "")
	if p, q, _, _ := s.request(); p != "/v1/counters/likes:post:42" || q != "consistency=linearizable" {
		t.Errorf("request %s?%s", p, q)
	}

	// Flags may follow the name, global ones included.
	code, out, errOut = tally(s, "get", "a b", "--stale", "--json")
	check(t, code, out, errOut, 0, `{"name":"a b","value":41,"shards":[3]}`+"\n", "")
	if p, q, _, _ := s.request(); p != "/v1/counters/a%20b" || q != "consistency=stale" {
		t.Errorf("request %s?%s", p, q)
	}
}

func TestIncrDecr(t *testing.T) {
	s := newServer(t)
	for _, tc := range []struct {
		args           []string
		path, body, ok string
	}{
		{[]string{"incr", "x"}, "/v1/counters/x/incr", `{"delta":1}`, "x = 41\n"},
		{[]string{"incr", "x", "5"}, "/v1/counters/x/incr", `{"delta":5}`, "x = 41\n"},
		{[]string{"incr", "x", "-5"}, "/v1/counters/x/incr", `{"delta":-5}`, "x = 41\n"},
		{[]string{"decr", "x", "2"}, "/v1/counters/x/decr", `{"delta":2}`, "x = 41\n"},
		{[]string{"incr", "split"}, "/v1/counters/split/incr", `{"delta":1}`, "split = 41 (lower bound)\n"},
		{[]string{"--json", "incr", "x"}, "/v1/counters/x/incr", `{"delta":1}`, `{"name":"x","value":41,"exact":true}` + "\n"},
	} {
		code, out, errOut := tally(s, tc.args...)
		check(t, code, out, errOut, 0, tc.ok, "")
		p, _, key, body := s.request()
		if p != tc.path || body != tc.body || len(key) != 32 {
			t.Errorf("%v: request %s %s key %q", tc.args, p, body, key)
		}
	}

	code, out, errOut := tally(s, "incr", "x", "3", "--key", "retry-7")
	check(t, code, out, errOut, 0, "x = 41\n", "")
	if _, _, key, body := s.request(); key != "retry-7" || body != `{"delta":3}` {
		t.Errorf("key %q body %s", key, body)
	}
	code, out, errOut = tally(s, "decr", "--key=k2", "x")
	check(t, code, out, errOut, 0, "x = 41\n", "")
	if p, _, key, _ := s.request(); key != "k2" || p != "/v1/counters/x/decr" {
		t.Errorf("key %q path %s", key, p)
	}
}

func TestCluster(t *testing.T) {
	s := newServer(t)
	code, out, errOut := tally(s, "cluster")
	want := `node n1

MEMBER  HTTP            STATE    HEALTH
n1      127.0.0.1:7070  active   alive
n20     127.0.0.1:7080  leaving  dead

SHARD  LEADER  REPLICAS  LEARNERS  APPLIED
0      n20     n1,n20    n3        123
1      -       n1        -         7
`
	check(t, code, out, errOut, 0, want, "")

	code, out, errOut = tally(s, "--json", "cluster")
	if code != 0 || errOut != "" || strings.Count(out, "\n") != 1 {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	var v struct {
		Node   string
		Shards []struct {
			ID     int
			Leader string
		}
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Node != "n1" || len(v.Shards) != 2 || v.Shards[0].Leader != "n20" {
		t.Errorf("--json cluster = %s (%v)", out, err)
	}
	// cluster.sh's kill-leader greps for this shape.
	if !strings.Contains(out, `{"id":0,"leader":"n20",`) {
		t.Errorf("--json cluster shard shape changed: %s", out)
	}
}

func TestNode(t *testing.T) {
	s := newServer(t)
	code, out, errOut := tally(s, "node", "decommission", "n2")
	check(t, code, out, errOut, 0, "node n2: leaving\n", "")
	if path, _, _, _ := s.request(); path != "/v1/cluster/nodes/n2/decommission" {
		t.Fatalf("decommission went to %s", path)
	}
	code, out, errOut = tally(s, "--json", "node", "decommission", "n2")
	check(t, code, out, errOut, 0, `{"id":"n2","state":"leaving"}`+"\n", "")
	code, _, errOut = tally(s, "node", "remove", "n3")
	if code != 1 || !strings.Contains(errOut, "alive; decommission it instead") {
		t.Fatalf("remove of a live node: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := tally(s, "node", "retire", "n3"); code != 2 || !strings.Contains(errOut, "unknown action") {
		t.Fatalf("unknown action: exit %d, stderr %q", code, errOut)
	}
}

func TestErrors(t *testing.T) {
	s := newServer(t)
	code, out, errOut := tally(s, "incr", "full")
	check(t, code, out, errOut, 1, "", "tally: overflow: increment would overflow (current value 9223372036854775807)\n")

	code, out, errOut = tally(s, "--timeout", "200ms", "incr", "hang", "--key", "k9")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "tally: outcome_unknown: ") ||
		!strings.Contains(errOut, `run: tally incr "hang" 1 --key k9`) {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	code, out, errOut = tally(nil, "--addr", dead, "--timeout", "300ms", "get", "x")
	if code != 1 || out != "" || !strings.HasPrefix(errOut, "tally: unavailable: ") {
		t.Errorf("exit %d, stdout %q, stderr %q", code, out, errOut)
	}
}

func TestUsage(t *testing.T) {
	s := newServer(t)
	code, out, errOut := tally(s, "--help")
	if code != 0 || errOut != "" || !strings.Contains(out, "Usage: tally [global flags] <command> [args]") {
		t.Errorf("--help: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	for _, c := range []string{"get NAME [--stale]", "incr NAME [DELTA] [--key K]", "decr NAME [DELTA] [--key K]", "cluster"} {
		if !strings.Contains(out, "  "+c) {
			t.Errorf("--help does not list %q", c)
		}
	}
	code, out, _ = tally(s, "incr", "--help")
	if code != 0 || !strings.Contains(out, "Usage: tally incr NAME [DELTA] [--key K]") || !strings.Contains(out, "--key K") {
		t.Errorf("incr --help: exit %d, stdout %q", code, out)
	}

	for _, args := range [][]string{
		{},
		{"frobnicate"},
		{"--bogus", "get", "x"},
		{"get"},
		{"get", "a", "b"},
		{"get", "x", "--bogus"},
		{"incr", "x", "many"},
		{"incr", "x", "1", "2"},
		{"cluster", "extra"},
	} {
		code, out, errOut := tally(s, args...)
		if code != 2 || out != "" || !strings.HasPrefix(errOut, "tally: ") && !strings.HasPrefix(errOut, "Usage: ") {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, errOut)
		}
	}
	if p, _, _, _ := s.request(); p != "" {
		t.Errorf("a usage error sent a request: %s", p)
	}
}

func TestAddrFlagBeatsEnv(t *testing.T) {
	s := newServer(t)
	other := newServer(t)
	code, out, errOut := tally(s, "--addr", "127.0.0.1:1,"+strings.TrimPrefix(other.URL, "http://"), "get", "x")
	check(t, code, out, errOut, 0, "x = 41\n", "")
	if p, _, _, _ := s.request(); p != "" {
		t.Errorf("TALLY_ADDR used despite --addr")
	}
	if p, _, _, _ := other.request(); p != "/v1/counters/x" {
		t.Errorf("--addr node got %q", p)
	}
}

func TestSplit(t *testing.T) {
	s := newServer(t)
	code, out, errOut := tally(s, "split", "views", "6")
	check(t, code, out, errOut, 0, "views: split 6 ways\n", "")
	if p, _, _, body := s.request(); p != "/v1/counters/views/split" || body != `{"n":6}` {
		t.Errorf("request %s %s", p, body)
	}
	code, out, errOut = tally(s, "--json", "split", "views", "4")
	check(t, code, out, errOut, 0, `{"name":"views","split":4}`+"\n", "")
	if code, _, errOut = tally(s, "split", "shrunk", "2"); code != 1 || !strings.Contains(errOut, "split_shrink") {
		t.Errorf("shrink: exit %d, stderr %q", code, errOut)
	}
	for _, args := range [][]string{{"split", "views"}, {"split", "views", "x"}, {"split", "views", "0"}} {
		if code, _, _ := tally(s, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)", args, code)
		}
	}
}

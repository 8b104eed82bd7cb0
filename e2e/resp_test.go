package e2e

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

// tool returns the path of a Redis command-line tool, or skips the test
// with what to install (CI installs redis-tools).
func tool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("%s not found (Debian package redis-tools); skipping", name)
	}
	return p
}

// respPort is node i's RESP port: its HTTP port + 3.
func (e *env) respPort(i int) string {
	_, port, _ := strings.Cut(e.addrs[i], ":")
	p, _ := strconv.Atoi(port)
	return strconv.Itoa(p + 3)
}

func (e *env) redisCLI(t *testing.T, node int, args ...string) string {
	t.Helper()
	out, err := exec.Command(tool(t, "redis-cli"), append([]string{"-p", e.respPort(node)}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("redis-cli %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// redis-benchmark's INCRs, spread over all three nodes (plain and
// pipelined), leave the counter at exactly the number of requests;
// redis-cli reads it from any node, and -c follows -MOVED.
func TestRedisToolsAgainstCluster(t *testing.T) {
	bench := tool(t, "redis-benchmark")
	tool(t, "redis-cli")
	e := newEnv(t, 3, 4)
	e.mustScript("up", "3")
	// A multiple of clients × pipeline: redis-benchmark sends whole
	// pipelines, so it overshoots any other -n (against Redis too).
	const perNode = 3200
	total := 0
	for _, pipeline := range []string{"1", "16"} {
		for i := range e.addrs {
			out, err := exec.Command(bench, "-p", e.respPort(i), "-t", "incr", "-n", strconv.Itoa(perNode), "-c", "20", "-P", pipeline, "-q").CombinedOutput()
			if err != nil {
				t.Fatalf("redis-benchmark on node %d: %v\n%s", i+1, err, out)
			}
			total += perNode
		}
	}
	for i := range e.addrs {
		if got := e.redisCLI(t, i, "GET", "counter:__rand_int__"); got != strconv.Itoa(total) {
			t.Fatalf("node %d reads %s, want exactly %d", i+1, got, total)
		}
	}
	if got := e.redisCLI(t, 0, "CLUSTER", "KEYSLOT", "{user1000}.following"); got != "3443" {
		t.Fatalf("CLUSTER KEYSLOT = %s", got)
	}
	if got := e.redisCLI(t, 1, "INCRBY", "likes:post:42", "x"); got != "ERR value is not an integer or out of range" {
		t.Fatalf("INCRBY of a non-integer: %q", got)
	}
}

// With --resp-redirect moved, a node answers -MOVED for keys other nodes
// lead, and redis-cli -c follows it from wherever it starts.
func TestRedisCLIFollowsMoved(t *testing.T) {
	tool(t, "redis-cli")
	e := newEnv(t, 3, 4)
	e.vars = append(e.vars, "TALLY_EXTRA_FLAGS=--resp-redirect moved")
	e.mustScript("up", "3")
	// Each INCR is either applied (an integer) or redirected (nothing
	// applied), so a key ends at the number of integer answers; while
	// leaders stay put that is 1, and the two other nodes redirect.
	moved := 0
	for k := range 12 {
		key := fmt.Sprintf("moved:%d", k)
		applied := 0
		for i := range e.addrs {
			switch got := e.redisCLI(t, i, "INCR", key); {
			case strings.HasPrefix(got, "MOVED "):
				moved++
			case got == strconv.Itoa(applied+1):
				applied++
			default:
				t.Fatalf("INCR %s on node %d: %q", key, i+1, got)
			}
		}
		if got := e.redisCLI(t, k%3, "-c", "GET", key); got != strconv.Itoa(applied) {
			t.Fatalf("redis-cli -c GET %s = %q, want %d", key, got, applied)
		}
	}
	if moved < 12 {
		t.Fatalf("only %d redirects for 12 keys on 3 nodes", moved)
	}
}

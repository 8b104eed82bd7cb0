// Package e2e tests tally as users run it: the built tallyd and tally
// binaries, started and killed through scripts/cluster.sh.
package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"math/rand/v2"

	"tally/client"
	"tally/placement"
)

// env is one local cluster run by scripts/cluster.sh in a temp dir.
type env struct {
	t      *testing.T
	repo   string
	vars   []string
	addrs  []string
	shards int
	opts   []client.Option // for every client the env makes (TLS, a token)
}

func repoRoot(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// freeBase finds a base port whose ports (per node http, raft, gossip and
// RESP; gossip on TCP and UDP) are all free right now.
func freeBase(t *testing.T, nodes int) int {
	for try := 0; try < 200; try++ {
		// Below the kernel's ephemeral range (32768 up): a port there can
		// be taken by any outgoing connection while a node is down, and
		// then the node cannot restart on it.
		base := 20000 + rand.IntN(120)*100
		ok := true
		var held []func() error
		for i := 0; i < nodes && ok; i++ {
			for k := 0; k < 4 && ok; k++ {
				port := base + 10*i + k
				l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
				if err != nil {
					ok = false
					break
				}
				held = append(held, l.Close)
				if k == 2 {
					u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
					if err != nil {
						ok = false
						break
					}
					held = append(held, u.Close)
				}
			}
		}
		for _, c := range held {
			c()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free port range found")
	return 0
}

func newEnv(t *testing.T, nodes, shards int) *env {
	if testing.Short() {
		t.Skip("process-level test")
	}
	repo := repoRoot(t)
	bin := t.TempDir()
	for _, b := range []string{"tallyd", "tally"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, b), "./cmd/"+b)
		cmd.Dir = repo
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("build %s: %v\n%s", b, err, out)
		}
	}
	base := freeBase(t, nodes)
	e := &env{t: t, repo: repo, shards: shards, vars: []string{
		"TALLY_RUN_DIR=" + t.TempDir(),
		"TALLY_BIN=" + bin,
		fmt.Sprintf("TALLY_BASE_PORT=%d", base),
		fmt.Sprintf("TALLY_SHARDS=%d", shards),
		"TALLY_WAIT=180",
	}}
	for i := 0; i < nodes; i++ {
		e.addrs = append(e.addrs, fmt.Sprintf("127.0.0.1:%d", base+10*i))
	}
	t.Cleanup(func() {
		// SIGKILL whatever is left: a test must not leave processes behind.
		for i := 1; i <= nodes; i++ {
			e.script("kill", fmt.Sprintf("n%d", i))
		}
		if t.Failed() {
			for i := 1; i <= nodes; i++ {
				out, _ := e.script("logs", fmt.Sprintf("n%d", i), "-n", "40")
				t.Logf("log of n%d:\n%s", i, out)
			}
		}
	})
	return e
}

// script runs scripts/cluster.sh with the env's variables and returns
// its standard output; on failure the error carries its standard error.
func (e *env) script(args ...string) (string, error) {
	cmd := exec.Command("bash", append([]string{filepath.Join(e.repo, "scripts", "cluster.sh")}, args...)...)
	cmd.Env = append(os.Environ(), e.vars...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		err = fmt.Errorf("%w: %s", err, stderr.String())
	}
	return string(out), err
}

func (e *env) mustScript(args ...string) string {
	e.t.Helper()
	out, err := e.script(args...)
	if err != nil {
		e.t.Fatalf("cluster.sh %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// ledger records what the writers attempted and what was acknowledged.
type ledger struct {
	mu       sync.Mutex
	acked    map[string]int64
	unknown  map[string]int64
	failures int
}

func (l *ledger) add(name string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err == nil:
		l.acked[name]++
	case client.IsOutcomeUnknown(err):
		l.unknown[name]++
	default:
		l.failures++
	}
}

// load runs writers until stop closes: each increment carries its own
// idempotency key and is retried by the client until acknowledged.
func (e *env) load(ctx context.Context, writers int, names []string, led *ledger, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		c := client.New(rotate(e.addrs, w), append([]client.Option{client.WithRetryDeadline(60 * time.Second)}, e.opts...)...)
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := names[(w+i)%len(names)]
				_, err := c.Incr(ctx, name, 1)
				led.add(name, err)
			}
		}(w)
	}
	return &wg
}

// monitor reads name linearizably, one read after another, and reports
// any value lower than one read before it.
func (e *env) monitor(ctx context.Context, name string, stop <-chan struct{}) (wait func() (reads int, backwards []string)) {
	c := client.New(e.addrs, append([]client.Option{client.WithRetryDeadline(60 * time.Second)}, e.opts...)...)
	var reads int
	var backwards []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		last := int64(-1)
		for {
			select {
			case <-stop:
				return
			default:
			}
			cv, err := c.Get(ctx, name, client.Linearizable)
			if err != nil {
				continue
			}
			reads++
			if cv.Value < last {
				backwards = append(backwards, fmt.Sprintf("%d after %d", cv.Value, last))
			}
			last = max(last, cv.Value)
		}
	}()
	return func() (int, []string) { <-done; return reads, backwards }
}

func rotate(addrs []string, k int) []string {
	out := make([]string, 0, len(addrs))
	for i := range addrs {
		out = append(out, addrs[(i+k)%len(addrs)])
	}
	return out
}

// waitCount waits until the ledger has at least n more acknowledgements.
func waitAcks(t *testing.T, led *ledger, n int64, d time.Duration) {
	t.Helper()
	count := func() int64 {
		led.mu.Lock()
		defer led.mu.Unlock()
		var s int64
		for _, v := range led.acked {
			s += v
		}
		return s
	}
	target := count() + n
	deadline := time.Now().Add(d)
	for count() < target {
		if time.Now().After(deadline) {
			t.Fatalf("writes stalled: %d acknowledgements in %v, want %d", count()-target+n, d, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestProcessCrashRecovery: SIGKILL the leader of the hot counter's
// shard under load, restart it, then SIGKILL every node and restart them
// all; every acknowledged increment must survive and no linearizable read
// may go backwards.
func TestProcessCrashRecovery(t *testing.T) {
	e := newEnv(t, 3, 8)
	e.mustScript("up", "3")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	hot := "hot:post:1"
	names := []string{hot, hot, hot, "cold:a", "cold:b", "cold:c", "cold:d"}
	led := &ledger{acked: map[string]int64{}, unknown: map[string]int64{}}
	stop := make(chan struct{})
	writers := e.load(ctx, 16, names, led, stop)
	monitorDone := e.monitor(ctx, hot, stop)

	waitAcks(t, led, 500, 2*time.Minute)
	hotShard := placement.Home(hot, e.shards)
	victim := strings.TrimSpace(lastLine(e.mustScript("kill-leader", fmt.Sprint(hotShard))))
	t.Logf("killed %s, leader of shard %d", victim, hotShard)
	waitAcks(t, led, 500, 2*time.Minute) // writes go on without it
	e.mustScript("start", victim)
	waitAcks(t, led, 500, 2*time.Minute)

	close(stop)
	writers.Wait()
	reads, backwards := monitorDone()
	if len(backwards) > 0 {
		t.Errorf("linearizable reads went backwards %d times: %v", len(backwards), backwards)
	}
	t.Logf("monitor: %d linearizable reads of %s", reads, hot)

	// Crash everything at once, then bring it all back.
	for i := 1; i <= 3; i++ {
		e.mustScript("kill", fmt.Sprintf("n%d", i))
	}
	restart := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, 3)
	outs := make([]string, 3)
	for i := 1; i <= 3; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			outs[i-1], errs[i-1] = e.script("start", fmt.Sprintf("n%d", i))
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("restart n%d: %v\n%s", i+1, err, outs[i])
		}
	}
	t.Logf("restart of all 3 nodes to ready: %v", time.Since(restart))

	led.mu.Lock()
	defer led.mu.Unlock()
	if led.failures > 0 {
		t.Errorf("%d increments failed outright", led.failures)
	}
	c := client.New(e.addrs, client.WithRetryDeadline(60*time.Second))
	var total int64
	for _, name := range []string{hot, "cold:a", "cold:b", "cold:c", "cold:d"} {
		cv, err := c.Get(ctx, name, client.Linearizable)
		if err != nil {
			t.Fatalf("read %s after restart: %v", name, err)
		}
		acked, unknown := led.acked[name], led.unknown[name]
		if cv.Value < acked || cv.Value > acked+unknown {
			t.Errorf("%s = %d after restart; acknowledged %d, unknown %d: an acknowledged increment was lost or one was counted twice", name, cv.Value, acked, unknown)
		}
		total += acked
	}
	t.Logf("%d increments acknowledged and all present after SIGKILL of the leader and of every node", total)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// Package e2e runs tally-sync-postgres against a real tally cluster and a
// real PostgreSQL, as separate processes.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"tally/client"
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(filepath.Dir(file)))
}

func build(t *testing.T, bin, dir, pkg, name string) {
	cmd := exec.Command("go", "build", "-o", filepath.Join(bin, name), pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, out)
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// asPostgres runs a PostgreSQL program, as the postgres user when root
// (PostgreSQL refuses to run as root).
func asPostgres(name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 {
		return exec.Command("runuser", append([]string{"-u", "postgres", "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

// startPostgres starts a throwaway PostgreSQL and returns its DSN.
func startPostgres(t *testing.T) string {
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Strings(dirs)
	if len(dirs) == 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("PostgreSQL is not installed (.ci/run installs Debian's postgresql)")
		}
		t.Skip("PostgreSQL is not installed (Debian: apt-get install postgresql): the sync test needs initdb and pg_ctl")
	}
	pgbin := dirs[len(dirs)-1]
	dir, err := os.MkdirTemp("", "tally-sync-pg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		if out, err := exec.Command("chown", "postgres:", dir).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
	}
	if out, err := asPostgres(filepath.Join(pgbin, "initdb"), "-D", dir+"/data", "-U", "tally", "--auth=trust", "-E", "UTF8").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := freePort(t)
	ctl := filepath.Join(pgbin, "pg_ctl")
	if out, err := asPostgres(ctl, "-D", dir+"/data", "-l", dir+"/postgres.log", "-w", "-t", "60",
		"-o", fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -k %s", port, dir), "start").CombinedOutput(); err != nil {
		log, _ := os.ReadFile(dir + "/postgres.log")
		t.Fatalf("pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	t.Cleanup(func() { asPostgres(ctl, "-D", dir+"/data", "-m", "immediate", "-w", "stop").Run() })
	return fmt.Sprintf("postgres://tally@127.0.0.1:%d/postgres?sslmode=disable", port)
}

// cluster drives scripts/cluster.sh.
type cluster struct {
	t     *testing.T
	vars  []string
	addrs []string
}

func (c *cluster) script(args ...string) string {
	c.t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join(repoRoot(), "scripts", "cluster.sh")}, args...)...)
	cmd.Env = append(os.Environ(), c.vars...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		c.t.Fatalf("cluster.sh %s: %v\n%s\n%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// startCluster starts nodes tallyd processes on a free port range.
func startCluster(t *testing.T, bin string, nodes int, extra string) *cluster {
	var base int
	for try := 0; ; try++ {
		base = 20000 + rand.IntN(120)*100
		ok := true
		for i := 0; i < nodes*10 && ok; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				break
			}
			l.Close()
		}
		if ok {
			break
		}
		if try > 100 {
			t.Fatal("no free port range")
		}
	}
	c := &cluster{t: t, vars: []string{
		"TALLY_RUN_DIR=" + t.TempDir(), "TALLY_BIN=" + bin, fmt.Sprintf("TALLY_BASE_PORT=%d", base),
		"TALLY_SHARDS=4", "TALLY_WAIT=180", "TALLY_EXTRA_FLAGS=" + extra,
	}}
	for i := 0; i < nodes; i++ {
		c.addrs = append(c.addrs, fmt.Sprintf("127.0.0.1:%d", base+10*i))
	}
	t.Cleanup(func() {
		for i := 1; i <= nodes; i++ {
			cmd := exec.Command("bash", filepath.Join(repoRoot(), "scripts", "cluster.sh"), "kill", fmt.Sprintf("n%d", i))
			cmd.Env = append(os.Environ(), c.vars...)
			cmd.Run()
		}
	})
	c.script("up", fmt.Sprint(nodes))
	return c
}

// lockedBuffer is a log the sink process writes while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// sinkProc is a running `tally sync postgres`.
type sinkProc struct {
	cmd *exec.Cmd
	log *lockedBuffer
}

func startSink(t *testing.T, bin string, addrs []string, dsn, table string) *sinkProc {
	log := &lockedBuffer{}
	cmd := exec.Command(filepath.Join(bin, "tally"), "--addr", strings.Join(addrs, ","), "sync", "postgres", "--dsn", dsn, "--table", table)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &sinkProc{cmd: cmd, log: log}
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *sinkProc) kill() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
	}
}

// tallyValues reads every name linearizably.
func tallyValues(ctx context.Context, t *testing.T, c *client.Client, names []string) map[string]int64 {
	out := map[string]int64{}
	for i := 0; i < len(names); i += 500 {
		chunk := names[i:min(i+500, len(names))]
		vals, err := c.MultiGet(ctx, chunk, client.Linearizable)
		if err != nil {
			t.Fatal(err)
		}
		for j, v := range vals {
			if v.Value != 0 {
				out[chunk[j]] = v.Value
			}
		}
	}
	return out
}

func tableValues(ctx context.Context, db *pgx.Conn, table string) (map[string]int64, error) {
	rows, err := db.Query(ctx, "SELECT name, value FROM "+table)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	var name string
	var v int64
	_, err = pgx.ForEachRow(rows, []any{&name, &v}, func() error { out[name] = v; return nil })
	return out, err
}

// inStep waits until the table holds exactly tally's values of names.
func inStep(ctx context.Context, t *testing.T, c *client.Client, db *pgx.Conn, table string, names []string, sink *sinkProc) {
	t.Helper()
	want := tallyValues(ctx, t, c, names)
	deadline := time.Now().Add(90 * time.Second)
	for {
		got, err := tableValues(ctx, db, table)
		diff := ""
		if err != nil {
			diff = err.Error()
		} else if len(got) != len(want) {
			diff = fmt.Sprintf("%d rows, tally has %d counters", len(got), len(want))
		} else {
			for n, v := range want {
				if got[n] != v {
					diff = fmt.Sprintf("%s: table %d, tally %d", n, got[n], v)
					break
				}
			}
		}
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the table is not in step with tally: %s\nsink log:\n%s", diff, sink.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSyncPostgresExact: the table equals tally's counts exactly after
// leader kills under load, after the sink is SIGKILLed and restarted
// mid-stream, and after it fell further behind than the nodes keep
// changes (it reloads from a dump).
func TestSyncPostgresExact(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test")
	}
	dsn := startPostgres(t)
	bin := t.TempDir()
	build(t, bin, repoRoot(), "./cmd/tallyd", "tallyd")
	build(t, bin, repoRoot(), "./cmd/tally", "tally")
	build(t, bin, filepath.Join(repoRoot(), "sink"), "./cmd/tally-sync-postgres", "tally-sync-postgres")
	cl := startCluster(t, bin, 3, "--changes-retention 600")
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	c := client.New(cl.addrs, client.WithRetryDeadline(60*time.Second))
	if _, err := c.Split(ctx, "hot", 3); err != nil {
		t.Fatal(err)
	}
	db, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	const table = "counts"
	sink := startSink(t, bin, cl.addrs, dsn, table)

	names := []string{"hot", "liked"}
	for i := 0; i < 40; i++ {
		names = append(names, fmt.Sprint("c", i))
	}
	stop := make(chan struct{})
	var acks atomic.Int64
	// more waits for n more acknowledged writes: the load runs on
	// through each fault before the next.
	more := func(n int64) {
		t.Helper()
		want := acks.Load() + n
		deadline := time.Now().Add(2 * time.Minute)
		for acks.Load() < want {
			if time.Now().After(deadline) {
				t.Fatalf("%d writes acknowledged, waiting for %d", acks.Load(), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wc := client.New(append(cl.addrs[w%3:], cl.addrs[:w%3]...), client.WithRetryDeadline(60*time.Second))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				name := names[(w*7+i)%len(names)]
				var err error
				switch {
				case name == "liked" && i%3 == 0:
					_, err = wc.Unlike(ctx, name, fmt.Sprint("u", i%50))
				case name == "liked":
					_, err = wc.Like(ctx, name, fmt.Sprint("u", i%50))
				case i%4 == 3:
					_, err = wc.Decr(ctx, name, 1)
				default:
					_, err = wc.Incr(ctx, name, int64(1+i%3))
				}
				if err == nil {
					acks.Add(1)
				}
			}
		}()
	}
	// Under load: two leader kills (each node restarted), and the sink
	// SIGKILLed and started again between them.
	for round, shard := range []int{0, 2} {
		more(2000)
		killed := cl.script("kill-leader", fmt.Sprint(shard))
		if round == 0 {
			sink.kill()
			sink = startSink(t, bin, cl.addrs, dsn, table)
		}
		more(1000)
		cl.script("start", killed)
	}
	more(2000)
	close(stop)
	wg.Wait()
	inStep(ctx, t, c, db, table, names, sink)

	// Behind by more than the nodes keep: the sink is down while 4,000
	// new counters (about 1,000 changes a shard, past the retention of
	// 600) are written; started again, it reloads a dump and follows on.
	sink.kill()
	all := append([]string(nil), names...)
	var fill sync.WaitGroup
	for w := 0; w < 16; w++ {
		fill.Add(1)
		go func() {
			defer fill.Done()
			for i := w; i < 4000; i += 16 {
				if _, err := c.Incr(ctx, fmt.Sprint("f", i), 1); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	fill.Wait()
	for i := 0; i < 4000; i++ {
		all = append(all, fmt.Sprint("f", i))
	}
	sink = startSink(t, bin, cl.addrs, dsn, table)
	if _, err := c.Incr(ctx, "hot", 5); err != nil {
		t.Fatal(err)
	}
	inStep(ctx, t, c, db, table, all, sink)
	if !strings.Contains(sink.log.String(), "reloading from a dump") {
		t.Fatalf("the sink never had to reload, so the test proved nothing about it; its log:\n%s", sink.log.String())
	}
}

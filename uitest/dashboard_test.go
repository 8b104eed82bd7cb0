// Package uitest drives tally's dashboard (/ui) in a real, headless
// Chromium against a real cluster. It is a module of its own so that
// the browser driver (chromedp) is no dependency of tally itself.
package uitest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"tally/client"
	"tally/tlsconf"
)

const watched = "ui:test:likes"

// chromium finds the browser: TALLY_CHROMIUM, else the usual names.
func chromium() string {
	if p := os.Getenv("TALLY_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// cluster is what the test runs against: its nodes' HTTP addresses, the
// token the page is given and the one the writers use.
type cluster struct {
	addrs             []string
	pageToken, writer string
	// ca is the cluster's CA certificate when it runs TLS (the page is
	// then on https, and tokens go to the members verified by it).
	ca string
	// own: started by this test, so its shape is known (3 members).
	own bool
}

// TestDashboard opens /ui on a secure 3-node cluster (TLS, tokens), under load:
// the page asks for a token, then shows the 3 members and every shard,
// per-node request rates for each member, and a watched counter that is
// being incremented rises on screen. It saves a screenshot to
// $TALLY_UI_SCREENSHOT when set, and on failure to a temp file.
//
// With TALLY_UI_ADDR (comma-separated HTTP addresses of a running
// plaintext cluster, TALLY_UI_TOKEN its token if it has tokens) it runs
// against that cluster instead; TALLY_UI_HOLD keeps the page open that
// long before the screenshot, so that the plots fill.
func TestDashboard(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level test: starts a cluster and a browser")
	}
	browser := chromium()
	if browser == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("no Chromium found (.ci/run installs Debian's chromium)")
		}
		t.Skip("no Chromium found (apt-get install -y chromium, or set TALLY_CHROMIUM): the dashboard's browser test did not run")
	}
	var c cluster
	if a := os.Getenv("TALLY_UI_ADDR"); a != "" {
		tok := os.Getenv("TALLY_UI_TOKEN")
		c = cluster{addrs: strings.Split(a, ","), pageToken: tok, writer: tok}
	} else {
		c = startCluster(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	opts := []client.Option{client.WithRetryDeadline(30 * time.Second), client.WithoutRouting()}
	if c.writer != "" {
		opts = append(opts, client.WithToken(c.writer))
	}
	scheme := "http"
	if c.ca != "" {
		cfg, err := tlsconf.ClientConfig(c.ca)
		if err != nil {
			t.Fatal(err)
		}
		opts = append(opts, client.WithTLS(cfg))
		scheme = "https"
	}
	info, err := client.New(c.addrs, opts...).Cluster(ctx)
	if err != nil {
		t.Fatalf("GET /v1/cluster: %v", err)
	}
	var wantMembers []string
	for _, m := range info.Members {
		wantMembers = append(wantMembers, m.ID)
	}
	var wantShards []int
	for _, s := range info.Shards {
		wantShards = append(wantShards, int(s.ID))
	}
	slices.Sort(wantMembers)
	slices.Sort(wantShards)
	if c.own && (len(wantMembers) != 3 || len(wantShards) != 4) {
		t.Fatalf("the cluster has members %v and shards %v; want 3 members, 4 shards", wantMembers, wantShards)
	}

	acked := load(t, ctx, c, opts)

	allocOpts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(browser),
		chromedp.Flag("headless", "new"),
		chromedp.NoSandbox, // as root, Chromium's sandbox refuses to start
		chromedp.DisableGPU,
		chromedp.WindowSize(1400, 1500),
		chromedp.UserDataDir(t.TempDir()),
	)
	if c.ca != "" {
		// The test's own CA, which this throwaway browser profile does
		// not know; the nodes verify each other against it.
		allocOpts = append(allocOpts, chromedp.Flag("ignore-certificate-errors", true))
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, allocOpts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	// Any exception the page's script throws fails the test.
	var jsMu sync.Mutex
	var jsErrors []string
	err = chromedp.Listen(bctx, func(ev any) {
		if e, ok := ev.(*cdpruntime.EventExceptionThrown); ok {
			jsMu.Lock()
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil && d.Exception.Description != "" {
				msg = d.Exception.Description
			}
			jsErrors = append(jsErrors, fmt.Sprintf("%s (%s:%d:%d)", msg, d.URL, d.LineNumber+1, d.ColumnNumber+1))
			jsMu.Unlock()
		}
	})
	if err != nil {
		t.Fatalf("start the browser: %v", err)
	}
	defer func() {
		jsMu.Lock()
		defer jsMu.Unlock()
		for _, e := range jsErrors {
			t.Errorf("the page threw: %s", e)
		}
	}()
	defer func() {
		path := os.Getenv("TALLY_UI_SCREENSHOT")
		if path == "" && !t.Failed() {
			return
		}
		if path == "" {
			f, err := os.CreateTemp("", "tally-ui-*.png")
			if err != nil {
				t.Logf("screenshot: %v", err)
				return
			}
			f.Close()
			path = f.Name()
		}
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Logf("screenshot: %v", err)
			return
		}
		if err := os.WriteFile(path, png, 0o644); err != nil {
			t.Logf("screenshot: %v", err)
			return
		}
		t.Logf("screenshot of the page: %s", path)
	}()

	// /ui redirects to /ui/, whose relative URLs the page uses.
	if err := chromedp.Do(bctx, chromedp.Navigate(scheme+"://"+c.addrs[0]+"/ui")); err != nil {
		t.Fatalf("open the dashboard: %v", err)
	}
	if c.pageToken != "" {
		// Nothing but the token form until a token is given.
		waitPage(t, bctx, "the token form", 30*time.Second, func(p page) bool { return p.Login && !p.Main })
		if err := chromedp.Do(bctx,
			chromedp.SendKeys(chromedp.ID("token"), c.pageToken),
			chromedp.Click(chromedp.CSS("#login button[type=submit]")),
		); err != nil {
			t.Fatalf("enter the token: %v", err)
		}
	}

	var last page
	waitPage(t, bctx, fmt.Sprintf("members %v and shards %v on screen", wantMembers, wantShards), 60*time.Second, func(p page) bool {
		last = p
		var ids []string
		for _, m := range p.Members {
			if m.State != "active" || m.Health != "alive" {
				return false
			}
			ids = append(ids, m.ID)
		}
		slices.Sort(ids)
		var shards []int
		for _, s := range p.Shards {
			if s.Leader == "" || s.Leader == "none" {
				return false
			}
			shards = append(shards, s.ID)
		}
		slices.Sort(shards)
		return !p.Login && p.Main && slices.Equal(ids, wantMembers) && slices.Equal(shards, wantShards)
	})
	if c.own && len(last.Members) != 3 {
		t.Fatalf("%d members on screen, want 3", len(last.Members))
	}

	// Every node serves some of the writers' requests, so each shows a
	// request rate and a p99 taken from its own metrics.
	waitPage(t, bctx, "a request rate and p99 for every member, and a plotted line for each", 60*time.Second, func(p page) bool {
		for _, m := range p.Members {
			if r, err := strconv.ParseFloat(strings.ReplaceAll(m.Requests, ",", ""), 64); err != nil || r <= 0 || m.P99 == "–" {
				return false
			}
		}
		return p.OpsLines == len(p.Members)
	})

	// Watch the counter the writers increment: its value on screen rises
	// past what had been acknowledged after it first showed.
	if err := chromedp.Do(bctx,
		chromedp.SendKeys(chromedp.ID("watch-name"), watched),
		chromedp.Click(chromedp.CSS("#watch-form button[type=submit]")),
	); err != nil {
		t.Fatalf("start watching: %v", err)
	}
	var first int64 = -1
	waitPage(t, bctx, "the watched counter's first value", 30*time.Second, func(p page) bool {
		v, ok := p.watchValue()
		if ok {
			first = v
		}
		return ok
	})
	target := max(first, acked.Load()) + 20
	var shown int64
	waitPage(t, bctx, fmt.Sprintf("%s rising on screen from %d to at least %d", watched, first, target), 60*time.Second, func(p page) bool {
		shown, _ = p.watchValue()
		return shown >= target && p.WatchLines == 1
	})
	t.Logf("%s rose on screen from %d to %d", watched, first, shown)

	if d, err := time.ParseDuration(os.Getenv("TALLY_UI_HOLD")); err == nil {
		// Not synchronisation: time for the plots to fill before the
		// screenshot that the docs show.
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
}

// page is what the test reads off the screen.
type page struct {
	Login, Main bool
	Members     []struct{ ID, State, Health, Requests, P99 string }
	Shards      []struct {
		ID     int
		Leader string
	}
	Watch      string
	OpsLines   int
	WatchLines int
}

func (p page) watchValue() (int64, bool) {
	v, err := strconv.ParseInt(strings.ReplaceAll(p.Watch, ",", ""), 10, 64)
	return v, err == nil
}

const readPage = `(() => {
  const text = (e) => e ? e.textContent.trim() : "";
  return {
    Login: !document.getElementById("login").hidden,
    Main: !document.getElementById("main").hidden,
    Members: [...document.querySelectorAll("#members tbody tr")].map((r) => ({
      ID: r.dataset.member, State: text(r.cells[2]), Health: text(r.cells[3]),
      Requests: text(r.querySelector("[data-field=requests]")), P99: text(r.querySelector("[data-field=p99]")),
    })),
    Shards: [...document.querySelectorAll("#shards tbody tr")].map((r) => ({ ID: Number(r.dataset.shard), Leader: text(r.cells[1]) })),
    Watch: text(document.getElementById("watch-value")),
    OpsLines: document.querySelectorAll("#ops-plot polyline").length,
    WatchLines: document.querySelectorAll("#watch-plot polyline").length,
  };
})()`

// waitPage reads the page until cond holds, failing the test at the
// deadline with what the page last showed.
func waitPage(t *testing.T, ctx context.Context, what string, d time.Duration, cond func(page) bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	var p page
	var err error
	for {
		if p, err = chromedp.Run(ctx, chromedp.Evaluate[page](readPage)); err == nil && cond(p) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; the page showed %+v (last error: %v)", d, what, p, err)
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v", what, ctx.Err())
		}
	}
}

// load runs three paced writers, one starting at each node, so every
// node serves requests; it returns the count of acknowledged increments
// of the watched counter. The writers stop with the test.
func load(t *testing.T, ctx context.Context, c cluster, opts []client.Option) *atomic.Int64 {
	var acked atomic.Int64
	ctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	for w := 0; w < 3; w++ {
		addrs := append(slices.Clone(c.addrs[w%len(c.addrs):]), c.addrs[:w%len(c.addrs)]...)
		cl := client.New(addrs, opts...)
		wg.Go(func() {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				}
				name := watched
				if i%2 == 1 {
					name = fmt.Sprintf("ui:test:other:%d", i%7)
				}
				if _, err := cl.Incr(ctx, name, 1); err == nil && name == watched {
					acked.Add(1)
				}
			}
		})
	}
	return &acked
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// startCluster builds tallyd and tally and starts a 3-node, 4-shard
// secure cluster (TLS, tokens, encrypted gossip: scripts/cluster.sh up
// --secure, as the e2e tests drive it); every node is SIGKILLed when the
// test ends. With TLS every member is verified by the cluster's CA, so
// the dashboard forwards the viewer's token to all of them.
func startCluster(t *testing.T) cluster {
	repo := repoRoot()
	bin := t.TempDir()
	for _, b := range []string{"tallyd", "tally"} {
		cmd := exec.Command("go", "build", "-o", filepath.Join(bin, b), "./cmd/"+b)
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b, err, out)
		}
	}
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	base := freeBase(t, 3)
	vars := []string{
		"TALLY_RUN_DIR=" + run,
		"TALLY_BIN=" + bin,
		fmt.Sprintf("TALLY_BASE_PORT=%d", base),
		"TALLY_SHARDS=4",
		"TALLY_WAIT=180",
	}
	script := func(args ...string) (string, error) {
		cmd := exec.Command("bash", append([]string{filepath.Join(repo, "scripts", "cluster.sh")}, args...)...)
		cmd.Env = append(os.Environ(), vars...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	t.Cleanup(func() {
		for i := 1; i <= 3; i++ {
			script("kill", fmt.Sprintf("n%d", i))
		}
		if t.Failed() {
			for i := 1; i <= 3; i++ {
				out, _ := script("logs", fmt.Sprintf("n%d", i), "-n", "30")
				t.Logf("log of n%d:\n%s", i, out)
			}
		}
	})
	if out, err := script("up", "3", "--secure"); err != nil {
		t.Fatalf("cluster.sh up 3 --secure: %v\n%s", err, out)
	}
	c := cluster{own: true, ca: filepath.Join(run, "certs", "ca.crt")}
	tokens, err := os.ReadFile(filepath.Join(run, "certs", "tokens"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(tokens), "\n") {
		switch f := strings.Fields(line); {
		case len(f) == 2 && f[1] == "read":
			c.pageToken = f[0]
		case len(f) == 2 && f[1] == "write":
			c.writer = f[0]
		}
	}
	if c.pageToken == "" || c.writer == "" {
		t.Fatalf("no read and write tokens in %s", filepath.Join(run, "certs", "tokens"))
	}
	for i := 0; i < 3; i++ {
		c.addrs = append(c.addrs, fmt.Sprintf("127.0.0.1:%d", base+10*i))
	}
	return c
}

// freeBase finds a base port whose ports (per node HTTP, raft, gossip
// and RESP; gossip on TCP and UDP) are all free right now, below the
// kernel's ephemeral range, in a band of its own (the e2e tests pick
// from 20000 to 31900).
func freeBase(t *testing.T, nodes int) int {
	for try := 0; try < 200; try++ {
		base := 15000 + rand.IntN(50)*100
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

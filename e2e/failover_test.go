package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"tally/client"
	"tally/placement"
)

// TestFailoverAfterLeaderKill SIGKILLs the leader of a busy shard ten
// times, each time measuring how long until the shard acknowledges a
// write again, and restarting the victim. Writers run throughout; no
// acknowledged increment may be lost or doubled. The timings are
// reported, not asserted: this machine is shared and noisy.
func TestFailoverAfterLeaderKill(t *testing.T) {
	e := newEnv(t, 3, 8)
	e.mustScript("up", "3")
	runDir := strings.TrimPrefix(e.vars[0], "TALLY_RUN_DIR=")

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	hot := "failover:hot"
	hotShard := placement.Home(hot, e.shards)
	led := &ledger{acked: map[string]int64{}, unknown: map[string]int64{}}
	stop := make(chan struct{})
	writers := e.load(ctx, 8, []string{hot}, led, stop)
	c := client.New(e.addrs, client.WithRetryDeadline(30*time.Second))

	kills := 10
	if testing.Short() {
		kills = 3
	}
	var gaps []time.Duration
	for k := 0; k < kills; k++ {
		waitAcks(t, led, 100, 2*time.Minute)
		info, err := c.Cluster(ctx)
		if err != nil {
			t.Fatal(err)
		}
		victim := ""
		for _, s := range info.Shards {
			if uint32(s.ID) == hotShard {
				victim = s.Leader
			}
		}
		if victim == "" {
			t.Fatalf("kill %d: shard %d has no leader", k, hotShard)
		}
		pidText, err := os.ReadFile(filepath.Join(runDir, victim+".pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(pidText)))
		killed := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %s: %v", victim, err)
		}
		gap := firstWrite(t, e, victim, probeName(hotShard, e.shards), killed)
		gaps = append(gaps, gap)
		t.Logf("kill %d: %s led shard %d; writes acknowledged again after %v", k+1, victim, hotShard, gap.Round(time.Millisecond))
		e.mustScript("start", victim)
	}
	close(stop)
	writers.Wait()

	sort.Slice(gaps, func(i, j int) bool { return gaps[i] < gaps[j] })
	t.Logf("failover after SIGKILL of the leader, %d kills: median %v, max %v", len(gaps),
		gaps[len(gaps)/2].Round(time.Millisecond), gaps[len(gaps)-1].Round(time.Millisecond))

	cv, err := c.Get(ctx, hot, client.Linearizable)
	if err != nil {
		t.Fatal(err)
	}
	led.mu.Lock()
	defer led.mu.Unlock()
	if cv.Value < led.acked[hot] || cv.Value > led.acked[hot]+led.unknown[hot] {
		t.Fatalf("%s = %d; acknowledged %d, unknown %d", hot, cv.Value, led.acked[hot], led.unknown[hot])
	}
	t.Logf("%d increments acknowledged across %d leader kills, all counted once (%d ended unknown)", led.acked[hot], kills, led.unknown[hot])
}

// probeName is a counter on shard s other than the one the writers use.
func probeName(s uint32, shards int) string {
	for i := 0; ; i++ {
		if n := fmt.Sprintf("failover:probe-%d", i); placement.Home(n, shards) == s {
			return n
		}
	}
}

// firstWrite sends single increments (each with its own key, short
// timeout) to the surviving nodes until one is acknowledged and returns
// the time from the kill to that acknowledgement.
func firstWrite(t *testing.T, e *env, victim, name string, killed time.Time) time.Duration {
	t.Helper()
	hc := &http.Client{Timeout: 500 * time.Millisecond}
	var live []string
	for i, a := range e.addrs {
		if fmt.Sprintf("n%d", i+1) != victim {
			live = append(live, a)
		}
	}
	deadline := killed.Add(60 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		req, _ := http.NewRequest(http.MethodPost, "http://"+live[i%len(live)]+"/v1/counters/"+name+"/incr", nil)
		req.Header.Set("Idempotency-Key", fmt.Sprintf("probe-%d-%d", killed.UnixNano(), i))
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(killed)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no write acknowledged within 60s of killing %s", victim)
	return 0
}

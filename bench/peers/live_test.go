package peers

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"tally/loadgen"
)

// store is what the live test needs of a driver.
type store interface {
	Client(i int) loadgen.Target
	Close() error
}

// TestLiveServers drives each store whose address is in the environment
// (scripts/bench.sh runs them; these variables point the test at running
// ones) with small verified runs: single increments, batches with
// repeated keys, reads. Without the variables there is nothing to test.
func TestLiveServers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	prefix := fmt.Sprintf("live-%d", time.Now().UnixNano())
	cases := []struct {
		env  string
		open func(addr string, cfg loadgen.Config) (store, error)
	}{
		{"BENCH_REDIS_ADDR", func(addr string, _ loadgen.Config) (store, error) {
			r := NewRedis(strings.Split(addr, ","), 4)
			return r, r.Ping(ctx)
		}},
		{"BENCH_POSTGRES_DSN", func(dsn string, cfg loadgen.Config) (store, error) {
			p, err := NewPostgres(ctx, dsn, 4)
			if err != nil {
				return nil, err
			}
			return p, p.Setup(ctx, cfg.Names())
		}},
		{"BENCH_ETCD_ADDRS", func(addr string, _ loadgen.Config) (store, error) {
			return NewEtcd(strings.Split(addr, ","))
		}},
	}
	ran := false
	for _, c := range cases {
		addr := os.Getenv(c.env)
		if addr == "" {
			continue
		}
		ran = true
		for _, batch := range []int{1, 4} {
			t.Run(fmt.Sprintf("%s/batch=%d", c.env, batch), func(t *testing.T) {
				cfg := loadgen.Config{Clients: 4, Requests: 200, Counter: fmt.Sprintf("%s-%d", prefix, batch), Counters: 3, Batch: batch, Reads: 0.1}
				s, err := c.open(addr, cfg)
				if err != nil {
					t.Fatal(err)
				}
				defer s.Close()
				b := loadgen.Bench{Config: cfg, Verify: true}
				var out strings.Builder
				read := func(ctx context.Context, names []string) (map[string]int64, error) {
					return loadgen.ReadAll(ctx, s.Client(0), names)
				}
				if err := b.Execute(ctx, &out, s.Client, read); err != nil {
					t.Fatalf("%v\n%s", err, out.String())
				}
				if !strings.Contains(out.String(), "verified") || !strings.Contains(out.String(), "errors 0") {
					t.Errorf("run: %s", out.String())
				}
			})
		}
	}
	if !ran {
		t.Skip("no BENCH_REDIS_ADDR, BENCH_POSTGRES_DSN or BENCH_ETCD_ADDRS: no live server to drive")
	}
}

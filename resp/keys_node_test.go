package resp_test

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tally/internal/testcluster"
	"tally/node"
	"tally/resp"
)

// DEL, SET, EXPIRE/TTL and the set commands against a real 3-node
// cluster, each command sent to another node than the one before, and a
// split counter: SET refuses it, DEL empties every sub-counter, INCR
// counts again after.
func TestRealClusterKeyAndSetCommands(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test")
	}
	tc := testcluster.StartRESP(t, 3, 4, resp.Forward, nil)
	ctx := testcluster.Ctx(t, 2*time.Minute)
	var cs []*redis.Client
	for _, a := range respAddrs(tc) {
		c := redis.NewClient(&redis.Options{Addr: a, Protocol: 2})
		defer c.Close()
		cs = append(cs, c)
	}

	if n, err := cs[0].SAdd(ctx, "post", "ann", "bob", "ann", "cy").Result(); err != nil || n != 3 {
		t.Fatalf("SADD = %d %v", n, err)
	}
	if n, err := cs[1].SCard(ctx, "post").Result(); err != nil || n != 3 {
		t.Fatalf("SCARD = %d %v", n, err)
	}
	if ok, err := cs[2].SIsMember(ctx, "post", "bob").Result(); err != nil || !ok {
		t.Fatalf("SISMEMBER = %v %v", ok, err)
	}
	if n, err := cs[2].SRem(ctx, "post", "bob", "nobody").Result(); err != nil || n != 1 {
		t.Fatalf("SREM = %d %v", n, err)
	}
	if v, err := cs[0].Get(ctx, "post").Int64(); err != nil || v != 2 {
		t.Fatalf("GET post = %d %v", v, err)
	}

	if err := cs[1].Set(ctx, "imported", 1000, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := cs[2].IncrBy(ctx, "imported", 5).Result(); err != nil || v != 1005 {
		t.Fatalf("INCRBY after SET = %d %v", v, err)
	}
	if v, err := cs[0].TTL(ctx, "imported").Result(); err != nil || v != -1 {
		t.Fatalf("TTL = %v %v, want -1", v, err)
	}
	if ok, err := cs[0].Expire(ctx, "imported", time.Hour).Result(); err != nil || !ok {
		t.Fatalf("EXPIRE = %v %v", ok, err)
	}
	if v, err := cs[1].TTL(ctx, "imported").Result(); err != nil || v < 59*time.Minute || v > time.Hour {
		t.Fatalf("TTL after EXPIRE = %v %v", v, err)
	}
	if ok, err := cs[2].PExpire(ctx, "imported", 100*time.Millisecond).Result(); err != nil || !ok {
		t.Fatalf("PEXPIRE = %v %v", ok, err)
	}
	testcluster.WaitFor(t, "imported to expire", 30*time.Second, func() bool {
		v, err := cs[0].TTL(ctx, "imported").Result()
		return err == nil && v == -2
	})
	if ok, err := cs[1].Expire(ctx, "imported", time.Hour).Result(); err != nil || ok {
		t.Fatalf("EXPIRE of an expired counter = %v %v", ok, err)
	}

	// A split counter.
	if _, err := tc.Nodes[0].Split(ctx, node.SplitRequest{Name: "hot", Factor: 4}); err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if err := cs[i%3].Incr(ctx, "hot").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cs[1].Set(ctx, "hot", 1, 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "COUNTERSPLIT ") {
		t.Fatalf("SET on a split counter: %v", err)
	}
	if n, err := cs[2].Del(ctx, "hot", "post", "never").Result(); err != nil || n != 2 {
		t.Fatalf("DEL = %d %v", n, err)
	}
	for _, c := range cs {
		if v, err := c.Get(ctx, "hot").Int64(); err != nil || v != 0 {
			t.Fatalf("GET hot after DEL = %d %v", v, err)
		}
	}
	if n, err := cs[0].SCard(ctx, "post").Result(); err != nil || n != 0 {
		t.Fatalf("SCARD after DEL = %d %v", n, err)
	}
	for i := range 9 {
		if err := cs[i%3].Incr(ctx, "hot").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if v, err := cs[1].Get(ctx, "hot").Int64(); err != nil || v != 9 {
		t.Fatalf("GET hot after counting again = %d %v", v, err)
	}
}

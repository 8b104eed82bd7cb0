package resp

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestDelCountsKeysThatExisted(t *testing.T) {
	m := newMem()
	s := startServer(t, m, Limits{})
	c := client(t, s, 2)
	ctx := context.Background()
	c.Incr(ctx, "a")
	c.SAdd(ctx, "s", "x")
	if n, err := c.Del(ctx, "a", "s", "none", "a").Result(); err != nil || n != 2 {
		t.Fatalf("DEL = %d %v, want 2", n, err)
	}
	if n, err := c.Exists(ctx, "a", "s").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS after DEL = %d %v", n, err)
	}
	if n, err := c.Del(ctx, "a").Result(); err != nil || n != 0 {
		t.Fatalf("second DEL = %d %v", n, err)
	}
}

func TestSetIsAnIntegerImport(t *testing.T) {
	m := newMem()
	s := startServer(t, m, Limits{})
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		c := client(t, s, proto)
		if v, err := c.Set(ctx, "k", 42, 0).Result(); err != nil || v != "OK" {
			t.Fatalf("SET: %q %v", v, err)
		}
		if v, err := c.Get(ctx, "k").Int64(); err != nil || v != 42 {
			t.Fatalf("GET after SET: %d %v", v, err)
		}
		if v, err := c.Incr(ctx, "k").Result(); err != nil || v != 43 {
			t.Fatalf("INCR after SET: %d %v", v, err)
		}
	}
	c := client(t, s, 2)
	for _, tc := range []struct {
		args []any
		want string
	}{
		{[]any{"SET", "k", "abc"}, errNotInteger},
		{[]any{"SET", "k", "1.5"}, errNotInteger},
		{[]any{"SET", "k", "1", "NX"}, errSyntax},
		{[]any{"SET", "k", "1", "XX"}, errSyntax},
		{[]any{"SET", "k", "1", "GET"}, errSyntax},
		{[]any{"SET", "k", "1", "KEEPTTL"}, errSyntax},
		{[]any{"SET", "k", "1", "EX"}, errSyntax},
		{[]any{"SET", "k", "1", "EX", "10", "PX", "10"}, errSyntax},
		{[]any{"SET", "k", "1", "EXAT", "10"}, errSyntax},
		{[]any{"SET", "k", "1", "EX", "0"}, "ERR invalid expire time in 'set' command"},
		{[]any{"SET", "k", "1", "PX", "-5"}, "ERR invalid expire time in 'set' command"},
		{[]any{"SET", "k", "1", "EX", "x"}, "ERR invalid expire time in 'set' command"},
		{[]any{"SET", "k", "1", "EX", "9223372036854775807"}, "ERR invalid expire time in 'set' command"},
		{[]any{"SET", "k", "1", "EX", "999999999999"}, "ERR invalid expire time in 'set' command"}, // overflows a duration
		{[]any{"SET", "k", "1", "EX", "400000000"}, "ERR invalid expire time in 'set' command"},    // beyond ten years: the core's bound
		{[]any{"SET", "k"}, "ERR wrong number of arguments for 'set' command"},
	} {
		if err := c.Do(ctx, tc.args...).Err(); err == nil || err.Error() != tc.want {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	if v, _ := c.Get(ctx, "k").Int64(); v != 43 {
		t.Fatalf("refused SETs changed the counter to %d", v)
	}
	// EX and PX set a window; a plain SET clears it, as in Redis.
	if err := c.Set(ctx, "w", 7, 10*time.Second).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.TTL(ctx, "w").Result(); err != nil || v != 10*time.Second {
		t.Fatalf("TTL after SET EX 10 = %v %v", v, err)
	}
	if err := c.Do(ctx, "SET", "w", "7", "px", "1500").Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.PTTL(ctx, "w").Result(); err != nil || v <= time.Second || v > 1500*time.Millisecond {
		t.Fatalf("PTTL after SET PX 1500 = %v %v", v, err)
	}
	if err := c.Set(ctx, "w", 8, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := c.TTL(ctx, "w").Result(); err != nil || v != -1 {
		t.Fatalf("TTL after a plain SET = %v %v, want -1", v, err)
	}
	// A split counter refuses, in tally's own code.
	m.mu.Lock()
	m.split["hot"] = true
	m.mu.Unlock()
	if err := c.Set(ctx, "hot", 1, 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "COUNTERSPLIT ") {
		t.Fatalf("SET on a split counter: %v", err)
	}
}

func TestExpireAndTTL(t *testing.T) {
	s := startServer(t, newMem(), Limits{})
	c := client(t, s, 2)
	ctx := context.Background()
	if v, err := c.TTL(ctx, "none").Result(); err != nil || v != -2 {
		t.Fatalf("TTL of a missing key = %v %v, want -2", v, err)
	}
	if v, err := c.PTTL(ctx, "none").Result(); err != nil || v != -2 {
		t.Fatalf("PTTL of a missing key = %v %v, want -2", v, err)
	}
	if ok, err := c.Expire(ctx, "none", time.Minute).Result(); err != nil || ok {
		t.Fatalf("EXPIRE of a missing key = %v %v", ok, err)
	}
	c.IncrBy(ctx, "k", 5)
	if v, err := c.TTL(ctx, "k").Result(); err != nil || v != -1 {
		t.Fatalf("TTL without expiry = %v %v, want -1", v, err)
	}
	if ok, err := c.Expire(ctx, "k", 100*time.Second).Result(); err != nil || !ok {
		t.Fatalf("EXPIRE = %v %v", ok, err)
	}
	if v, err := c.Do(ctx, "TTL", "k").Int64(); err != nil || v != 100 {
		t.Fatalf("TTL = %d %v, want 100", v, err)
	}
	if ok, err := c.PExpire(ctx, "k", 5000*time.Millisecond).Result(); err != nil || !ok {
		t.Fatalf("PEXPIRE = %v %v", ok, err)
	}
	if v, err := c.Do(ctx, "PTTL", "k").Int64(); err != nil || v <= 4000 || v > 5000 {
		t.Fatalf("PTTL = %d %v", v, err)
	}
	for _, tc := range []struct {
		args []any
		want string
	}{
		{[]any{"EXPIRE", "k", "x"}, errNotInteger},
		{[]any{"PEXPIRE", "k", "1.5"}, errNotInteger},
		{[]any{"EXPIRE", "k", "10", "NX"}, errSyntax},
		{[]any{"EXPIRE", "k", "9223372036854775807"}, "ERR invalid expire time in 'expire' command"},
		{[]any{"PEXPIRE", "k", "999999999999999"}, "ERR invalid expire time in 'pexpire' command"},
		{[]any{"PEXPIRE", "k", "400000000000"}, "ERR invalid expire time in 'pexpire' command"}, // beyond ten years
		{[]any{"TTL"}, "ERR wrong number of arguments for 'ttl' command"},
	} {
		if err := c.Do(ctx, tc.args...).Err(); err == nil || err.Error() != tc.want {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	// A time <= 0 deletes, as Redis does: 1 if the key existed.
	for i, want := range []int64{1, 0} {
		if v, err := c.Do(ctx, "EXPIRE", "k", "0").Int64(); err != nil || v != want {
			t.Fatalf("EXPIRE k 0 (%d): %d %v, want %d", i, v, err, want)
		}
	}
	if v, err := c.TTL(ctx, "k").Result(); err != nil || v != -2 {
		t.Fatalf("TTL after EXPIRE 0 = %v %v, want -2", v, err)
	}
	c.Incr(ctx, "q")
	if v, err := c.Do(ctx, "PEXPIRE", "q", "-10").Int64(); err != nil || v != 1 {
		t.Fatalf("PEXPIRE q -10 = %d %v", v, err)
	}
	if v, _ := c.Get(ctx, "q").Int64(); v != 0 {
		t.Fatalf("q = %d after a negative PEXPIRE", v)
	}
}

func TestActorSetsAsRedisSets(t *testing.T) {
	m := newMem()
	s := startServer(t, m, Limits{})
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprint("resp", proto), func(t *testing.T) {
			c := client(t, s, proto)
			key := fmt.Sprint("post", proto)
			if n, err := c.SAdd(ctx, key, "a", "b", "a").Result(); err != nil || n != 2 {
				t.Fatalf("SADD = %d %v, want 2", n, err)
			}
			if n, err := c.SAdd(ctx, key, "b", "c").Result(); err != nil || n != 1 {
				t.Fatalf("SADD = %d %v, want 1", n, err)
			}
			if n, err := c.SCard(ctx, key).Result(); err != nil || n != 3 {
				t.Fatalf("SCARD = %d %v", n, err)
			}
			if ok, err := c.SIsMember(ctx, key, "a").Result(); err != nil || !ok {
				t.Fatalf("SISMEMBER a = %v %v", ok, err)
			}
			if ok, err := c.SIsMember(ctx, key, "z").Result(); err != nil || ok {
				t.Fatalf("SISMEMBER z = %v %v", ok, err)
			}
			if n, err := c.SRem(ctx, key, "a", "z").Result(); err != nil || n != 1 {
				t.Fatalf("SREM = %d %v", n, err)
			}
			if v, err := c.Get(ctx, key).Int64(); err != nil || v != 2 {
				t.Fatalf("the counter behind the set = %d %v, want 2", v, err)
			}
			if err := c.SAdd(ctx, key, "ok", "bad/member").Err(); err == nil || !strings.HasPrefix(err.Error(), "ERR actor id contains '/'") {
				t.Fatalf("bad member: %v", err)
			}
			if err := c.Do(ctx, "SADD", key).Err(); err == nil || err.Error() != "ERR wrong number of arguments for 'sadd' command" {
				t.Fatalf("SADD without members: %v", err)
			}
		})
	}
	// Every member of one SADD reaches the core in one call.
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.actorCalls) == 0 || !reflect.DeepEqual(m.actorCalls[0], []string{"a", "b", "a"}) {
		t.Fatalf("actor calls %v", m.actorCalls)
	}
}

// COMMAND INFO reports the arity and key positions clients extract keys by.
func TestNewCommandsInCommandInfo(t *testing.T) {
	s := startServer(t, newMem(), Limits{})
	c := client(t, s, 2)
	info, err := c.Command(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][4]int64{
		"del": {-2, 1, -1, 1}, "set": {-3, 1, 1, 1}, "expire": {-3, 1, 1, 1}, "pexpire": {-3, 1, 1, 1},
		"ttl": {2, 1, 1, 1}, "pttl": {2, 1, 1, 1}, "sadd": {-3, 1, 1, 1}, "srem": {-3, 1, 1, 1},
		"sismember": {3, 1, 1, 1}, "scard": {2, 1, 1, 1},
	} {
		ci := info[name]
		if ci == nil {
			t.Errorf("COMMAND lacks %s", name)
			continue
		}
		if got := [4]int64{int64(ci.Arity), int64(ci.FirstKeyPos), int64(ci.LastKeyPos), int64(ci.StepCount)}; got != want {
			t.Errorf("%s: arity and keys %v, want %v", name, got, want)
		}
		if ci.ReadOnly != (name == "ttl" || name == "pttl" || name == "sismember" || name == "scard") {
			t.Errorf("%s: readonly %v", name, ci.ReadOnly)
		}
	}
}

// go-redis's Set with KeepTTL sends an option tally refuses.
func TestSetKeepTTLRefused(t *testing.T) {
	s := startServer(t, newMem(), Limits{})
	c := client(t, s, 2)
	if err := c.Set(context.Background(), "k", 1, redis.KeepTTL).Err(); err == nil || err.Error() != errSyntax {
		t.Fatalf("SET KEEPTTL: %v", err)
	}
}

// The new single-key commands are redirected like INCR: a plain client on
// the wrong node gets -MOVED, and go-redis's cluster client finds the key
// by COMMAND's key positions and sends it to its leader.
func TestKeyAndSetCommandsAreRedirected(t *testing.T) {
	m := newMem()
	fc := startCluster(t, m, Moved)
	ctx := context.Background()
	far := keyOnShard(1, 0) // led by n2
	plain := redis.NewClient(&redis.Options{Addr: fc.addrs["n1"], Protocol: 2})
	defer plain.Close()
	for _, args := range [][]any{
		{"SET", far, "1"}, {"EXPIRE", far, "10"}, {"PEXPIRE", far, "10"}, {"TTL", far}, {"PTTL", far},
		{"SADD", far, "a"}, {"SREM", far, "a"}, {"SISMEMBER", far, "a"}, {"SCARD", far},
	} {
		err := plain.Do(ctx, args...).Err()
		if err == nil || !strings.HasPrefix(err.Error(), "MOVED ") || !strings.HasSuffix(err.Error(), fc.addrs["n2"]) {
			t.Errorf("%v on n1: %v, want MOVED to n2", args, err)
		}
	}
	m.mu.Lock()
	if len(m.actorCalls) != 0 || len(m.vals) != 0 {
		t.Fatalf("redirected commands ran: %v %v", m.actorCalls, m.vals)
	}
	m.mu.Unlock()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{fc.addrs["n1"]}, Protocol: 2})
	defer cc.Close()
	for _, k := range []string{keyOnShard(0, 0), far} {
		if err := cc.Set(ctx, k, 5, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
		if n, err := cc.SAdd(ctx, k, "x", "y").Result(); err != nil || n != 2 {
			t.Fatalf("SADD %s: %d %v", k, n, err)
		}
		if n, err := cc.SCard(ctx, k).Result(); err != nil || n != 2 {
			t.Fatalf("SCARD %s: %d %v", k, n, err)
		}
		if ok, err := cc.Expire(ctx, k, time.Minute).Result(); err != nil || !ok {
			t.Fatalf("EXPIRE %s: %v %v", k, ok, err)
		}
		if n, err := cc.Del(ctx, k).Result(); err != nil || n != 1 {
			t.Fatalf("DEL %s: %d %v", k, n, err)
		}
	}
}

// Package peers drives other stores with the idiomatic counter of each,
// through loadgen's Target interface, so they are measured by the same
// client loop and histogram as tally.
package peers

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"tally/loadgen"
)

// Redis counts with INCRBY; a batch is a pipeline of INCRBYs (one round
// trip, no MULTI: each command stands alone, as a pipelining client would
// send them). Client i uses addrs[i % len(addrs)].
type Redis struct{ rdbs []*redis.Client }

// NewRedis makes one pooled client per address, each pool big enough for
// every bench client that uses it.
func NewRedis(addrs []string, clients int) *Redis {
	r := &Redis{}
	per := (clients + len(addrs) - 1) / len(addrs)
	for _, a := range addrs {
		r.rdbs = append(r.rdbs, redis.NewClient(&redis.Options{Addr: a, PoolSize: per, MinIdleConns: per}))
	}
	return r
}

// Ping checks every address answers.
func (r *Redis) Ping(ctx context.Context) error {
	for _, c := range r.rdbs {
		if err := c.Ping(ctx).Err(); err != nil {
			return err
		}
	}
	return nil
}

func (r *Redis) Client(i int) loadgen.Target { return redisTarget{r.rdbs[i%len(r.rdbs)]} }

func (r *Redis) Close() error {
	var errs []error
	for _, c := range r.rdbs {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

type redisTarget struct{ c *redis.Client }

// redisErr: a reply error (WRONGTYPE, OOM, ...) applied nothing; anything
// else (a broken connection, a timeout) may have.
func redisErr(err error) error {
	var re redis.Error
	if errors.As(err, &re) {
		return &loadgen.Error{Code: "redis: " + re.Error()}
	}
	return &loadgen.Error{Code: "redis transport", Maybe: true}
}

func (t redisTarget) Incr(ctx context.Context, counter string, delta int64) error {
	if err := t.c.IncrBy(ctx, counter, delta).Err(); err != nil {
		return redisErr(err)
	}
	return nil
}

func (t redisTarget) IncrBatch(ctx context.Context, ops []loadgen.Op, errs []error) error {
	pipe := t.c.Pipeline()
	cmds := make([]*redis.IntCmd, len(ops))
	for i, op := range ops {
		cmds[i] = pipe.IncrBy(ctx, op.Counter, op.Delta)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		var re redis.Error
		if !errors.As(err, &re) {
			return redisErr(err) // the pipeline broke: any of it may have applied
		}
	}
	for i, c := range cmds {
		if err := c.Err(); err != nil {
			errs[i] = redisErr(err)
		}
	}
	return nil
}

func (t redisTarget) Read(ctx context.Context, counters []string) ([]int64, error) {
	vals, err := t.c.MGet(ctx, counters...).Result()
	if err != nil {
		return nil, redisErr(err)
	}
	out := make([]int64, len(counters))
	for i, v := range vals {
		if v == nil {
			continue // never written: 0
		}
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("redis: %s holds %T", counters[i], v)
		}
		if out[i], err = strconv.ParseInt(s, 10, 64); err != nil {
			return nil, fmt.Errorf("redis: %s: %w", counters[i], err)
		}
	}
	return out, nil
}

package resp

import (
	"context"
	"math"
	"time"

	"tally/node"
)

// Counter commands: Redis's INCR family, GET, MGET and EXISTS on tally's
// counters, and TALLY.INCRBY for what only tally has (bounds, windows,
// idempotency ids).

func init() {
	write := []string{"write", "denyoom", "fast"}
	read := []string{"readonly", "fast"}
	register(&spec{name: "incr", arity: 2, flags: write, first: 1, last: 1, step: 1, add: func(a [][]byte) (node.AddRequest, error) {
		return node.AddRequest{Name: string(a[1]), Delta: 1}, nil
	}})
	register(&spec{name: "decr", arity: 2, flags: write, first: 1, last: 1, step: 1, add: func(a [][]byte) (node.AddRequest, error) {
		return node.AddRequest{Name: string(a[1]), Delta: -1}, nil
	}})
	register(&spec{name: "incrby", arity: 3, flags: write, first: 1, last: 1, step: 1, add: func(a [][]byte) (node.AddRequest, error) {
		d, ok := parseInt(a[2])
		if !ok {
			return node.AddRequest{}, errNotIntegerErr
		}
		return node.AddRequest{Name: string(a[1]), Delta: d}, nil
	}})
	register(&spec{name: "decrby", arity: 3, flags: write, first: 1, last: 1, step: 1, add: func(a [][]byte) (node.AddRequest, error) {
		d, ok := parseInt(a[2])
		if !ok {
			return node.AddRequest{}, errNotIntegerErr
		}
		if d == math.MinInt64 {
			return node.AddRequest{}, errDecrementOverflow
		}
		return node.AddRequest{Name: string(a[1]), Delta: -d}, nil
	}})
	register(&spec{name: "tally.incrby", arity: -3, flags: write, first: 1, last: 1, step: 1, add: parseTallyIncrBy})
	register(&spec{name: "get", arity: 2, flags: read, first: 1, last: 1, step: 1, run: cmdGet})
	register(&spec{name: "mget", arity: -2, flags: read, first: 1, last: -1, step: 1, run: cmdMGet})
	register(&spec{name: "exists", arity: -2, flags: read, first: 1, last: -1, step: 1, run: cmdExists})
}

var errDecrementOverflow = &node.Error{Code: node.CodeOverflow, Message: "decrement would overflow"}

// maxTTL matches the HTTP API's bound on ttl_ms (a year).
const maxTTL = 365 * 24 * time.Hour

// TALLY.INCRBY key delta [MIN n] [MAX n] [PX ms] [IDEMPOTENCY id]
func parseTallyIncrBy(a [][]byte) (node.AddRequest, error) {
	d, ok := parseInt(a[2])
	if !ok {
		return node.AddRequest{}, errNotIntegerErr
	}
	add := node.AddRequest{Name: string(a[1]), Delta: d}
	for i := 3; i < len(a); i += 2 {
		if i+1 >= len(a) {
			return node.AddRequest{}, errSyntaxErr
		}
		opt, val := upper(a[i]), a[i+1]
		switch opt {
		case "MIN", "MAX":
			v, ok := parseInt(val)
			if !ok {
				return node.AddRequest{}, errNotIntegerErr
			}
			if opt == "MIN" {
				add.Min, add.HasMin = v, true
			} else {
				add.Max, add.HasMax = v, true
			}
		case "PX":
			v, ok := parseInt(val)
			if !ok || v <= 0 || time.Duration(v)*time.Millisecond > maxTTL {
				return node.AddRequest{}, &node.Error{Code: node.CodeBadTTL, Message: "invalid expire time in 'tally.incrby' command"}
			}
			add.TTL = time.Duration(v) * time.Millisecond
		case "IDEMPOTENCY":
			add.IdempotencyKey = string(val)
		default:
			return node.AddRequest{}, errSyntaxErr
		}
	}
	return add, nil
}

func (c *conn) read(ctx context.Context, names []string) ([]node.ReadResult, bool) {
	consistency := node.Linearizable
	if c.stale {
		consistency = node.Stale
	}
	vals, err := c.s.cfg.Core.ReadMany(ctx, names, consistency)
	if err != nil {
		c.writeErr(err)
		return nil, false
	}
	return vals, true
}

// GET answers a counter's value as a bulk string, as Redis answers a key
// INCR made; an unknown counter is "0", as on tally's HTTP API (a counter
// that falls back to 0 holds nothing and is gone).
func cmdGet(ctx context.Context, c *conn, args [][]byte) {
	vals, ok := c.read(ctx, []string{string(args[1])})
	if ok {
		c.wr.BulkInt(vals[0].Value)
	}
}

func cmdMGet(ctx context.Context, c *conn, args [][]byte) {
	vals, ok := c.read(ctx, names(args[1:]))
	if !ok {
		return
	}
	c.wr.Array(len(vals))
	for _, v := range vals {
		c.wr.BulkInt(v.Value)
	}
}

// EXISTS counts the names that hold something: a non-zero value, a
// window, or a split.
func cmdExists(ctx context.Context, c *conn, args [][]byte) {
	vals, ok := c.read(ctx, names(args[1:]))
	if !ok {
		return
	}
	n := 0
	for _, v := range vals {
		if v.Value != 0 || !v.ExpiresAt.IsZero() || v.Split > 1 {
			n++
		}
	}
	c.wr.Int(int64(n))
}

func names(args [][]byte) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = string(a)
	}
	return out
}

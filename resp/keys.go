package resp

import (
	"context"
	"errors"
	"math"
	"time"

	"tally/node"
)

// Whole-counter commands: DEL, SET (an integer import), EXPIRE, PEXPIRE,
// TTL and PTTL, on tally's counters and their expiry.

func init() {
	write := []string{"write"}
	read := []string{"readonly", "fast"}
	register(&spec{name: "del", arity: -2, flags: write, first: 1, last: -1, step: 1, run: cmdDel})
	register(&spec{name: "set", arity: -3, flags: []string{"write", "denyoom"}, first: 1, last: 1, step: 1, run: cmdSet})
	register(&spec{name: "expire", arity: -3, flags: []string{"write", "fast"}, first: 1, last: 1, step: 1, run: func(ctx context.Context, c *conn, a [][]byte) {
		cmdExpire(ctx, c, a, time.Second)
	}})
	register(&spec{name: "pexpire", arity: -3, flags: []string{"write", "fast"}, first: 1, last: 1, step: 1, run: func(ctx context.Context, c *conn, a [][]byte) {
		cmdExpire(ctx, c, a, time.Millisecond)
	}})
	register(&spec{name: "ttl", arity: 2, flags: read, first: 1, last: 1, step: 1, run: func(ctx context.Context, c *conn, a [][]byte) {
		cmdTTL(ctx, c, a, time.Second)
	}})
	register(&spec{name: "pttl", arity: 2, flags: read, first: 1, last: 1, step: 1, run: func(ctx context.Context, c *conn, a [][]byte) {
		cmdTTL(ctx, c, a, time.Millisecond)
	}})
}

// DEL key [key ...] answers how many of the keys existed.
func cmdDel(ctx context.Context, c *conn, args [][]byte) {
	n := int64(0)
	for _, k := range args[1:] {
		existed, err := c.s.cfg.Core.Delete(ctx, string(k))
		if err != nil {
			c.writeErr(err)
			return
		}
		if existed {
			n++
		}
	}
	c.wr.Int(n)
}

// SET key value [EX seconds | PX milliseconds]: the value must be an
// integer (tally holds counters); without EX or PX the counter no longer
// expires, as Redis's SET clears a TTL. NX, XX, GET, KEEPTTL, EXAT and
// PXAT are not supported and answer a syntax error.
func cmdSet(ctx context.Context, c *conn, args [][]byte) {
	v, ok := parseInt(args[2])
	if !ok {
		c.wr.Error(errNotInteger)
		return
	}
	var ttl time.Duration
	switch len(args) {
	case 3:
	case 5:
		unit := time.Second
		switch upper(args[3]) {
		case "EX":
		case "PX":
			unit = time.Millisecond
		default:
			c.wr.Error(errSyntax)
			return
		}
		var bad bool
		if ttl, bad = expireTime(args[4], unit); bad || ttl <= 0 {
			c.wr.Error(errInvalidExpire("set"))
			return
		}
	default:
		c.wr.Error(errSyntax)
		return
	}
	if err := c.s.cfg.Core.Set(ctx, string(args[1]), v, ttl); err != nil {
		c.writeExpireErr(err, "set")
		return
	}
	c.wr.Simple("OK")
}

// EXPIRE key seconds / PEXPIRE key milliseconds: 1 if the counter exists
// and now expires that long after the leader applies it, 0 if there is no
// such counter. A time <= 0 deletes the counter, as in Redis. The NX, XX,
// GT and LT options are not supported (syntax error).
func cmdExpire(ctx context.Context, c *conn, args [][]byte, unit time.Duration) {
	name := string(args[1])
	if len(args) > 3 {
		c.wr.Error(errSyntax)
		return
	}
	if _, ok := parseInt(args[2]); !ok {
		c.wr.Error(errNotInteger)
		return
	}
	ttl, bad := expireTime(args[2], unit)
	if bad {
		c.wr.Error(errInvalidExpire(string(lowerName(args[0]))))
		return
	}
	var changed bool
	var err error
	if ttl <= 0 {
		changed, err = c.s.cfg.Core.Delete(ctx, name)
	} else {
		changed, err = c.s.cfg.Core.Expire(ctx, name, ttl)
	}
	if err != nil {
		c.writeExpireErr(err, string(lowerName(args[0])))
		return
	}
	c.wr.Bool(changed)
}

// TTL / PTTL: -2 for a counter that does not exist, -1 for one without
// an expiry, else the time left (seconds rounded as Redis does, or
// milliseconds).
func cmdTTL(ctx context.Context, c *conn, args [][]byte, unit time.Duration) {
	vals, ok := c.read(ctx, []string{string(args[1])})
	if !ok {
		return
	}
	v := vals[0]
	switch {
	case !exists(v):
		c.wr.Int(-2)
	case v.ExpiresAt.IsZero():
		c.wr.Int(-1)
	default:
		left := max(time.Until(v.ExpiresAt), 0)
		c.wr.Int(int64((left + unit/2) / unit))
	}
}

// exists is EXISTS's rule: a counter exists while it holds a non-zero
// value, a window, or a split.
func exists(v node.ReadResult) bool {
	return v.Value != 0 || !v.ExpiresAt.IsZero() || v.Split > 1
}

// expireTime parses an integer time in unit; bad when it is not an
// integer or overflows a time.Duration, as Redis refuses times whose
// absolute expiry would overflow.
func expireTime(b []byte, unit time.Duration) (ttl time.Duration, bad bool) {
	v, ok := parseInt(b)
	if !ok {
		return 0, true
	}
	if v > math.MaxInt64/int64(unit) || v < math.MinInt64/int64(unit) {
		return 0, true
	}
	return time.Duration(v) * unit, false
}

func errInvalidExpire(cmd string) string {
	return "ERR invalid expire time in '" + cmd + "' command"
}

// writeExpireErr is writeErr with Redis's words for a time out of range.
func (c *conn) writeExpireErr(err error, cmd string) {
	var e *node.Error
	if errors.As(err, &e) && e.Code == node.CodeBadTTL {
		c.wr.Error(errInvalidExpire(cmd))
		return
	}
	c.writeErr(err)
}

func lowerName(b []byte) []byte {
	out := make([]byte, len(b))
	for i, ch := range b {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		out[i] = ch
	}
	return out
}

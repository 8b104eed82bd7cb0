package resp

import (
	"context"

	"tally/node"
)

// A counter's actor set as a Redis set: SADD likes, SREM unlikes (the
// counter moves by one per member whose membership changed), SISMEMBER
// and SCARD read the set. Members follow tally's actor rules (1–128 bytes
// of printable UTF-8 without '/').

func init() {
	write := []string{"write", "denyoom", "fast"}
	read := []string{"readonly", "fast"}
	register(&spec{name: "sadd", arity: -3, flags: write, first: 1, last: 1, step: 1, run: func(ctx context.Context, c *conn, a [][]byte) {
		cmdActors(ctx, c, a, true)
	}})
	register(&spec{name: "srem", arity: -3, flags: []string{"write", "fast"}, first: 1, last: 1, step: 1, run: func(ctx context.Context, c *conn, a [][]byte) {
		cmdActors(ctx, c, a, false)
	}})
	register(&spec{name: "sismember", arity: 3, flags: read, first: 1, last: 1, step: 1, run: cmdSIsMember})
	register(&spec{name: "scard", arity: 2, flags: read, first: 1, last: 1, step: 1, run: cmdSCard})
}

// SADD / SREM key member [member ...]: every member in one call to the
// core (one raft entry); the answer is how many were added (removed).
func cmdActors(ctx context.Context, c *conn, args [][]byte, add bool) {
	changed, _, err := c.s.cfg.Core.Actors(ctx, string(args[1]), names(args[2:]), add)
	if err != nil {
		c.writeErr(err)
		return
	}
	c.wr.Int(int64(changed))
}

func (c *conn) consistency() node.Consistency {
	if c.stale {
		return node.Stale
	}
	return node.Linearizable
}

func cmdSIsMember(ctx context.Context, c *conn, args [][]byte) {
	ok, err := c.s.cfg.Core.IsMember(ctx, node.MemberRequest{Name: string(args[1]), Actor: string(args[2]), Consistency: c.consistency()})
	if err != nil {
		c.writeErr(err)
		return
	}
	if ok {
		c.wr.Int(1)
	} else {
		c.wr.Int(0)
	}
}

func cmdSCard(ctx context.Context, c *conn, args [][]byte) {
	n, err := c.s.cfg.Core.ActorCount(ctx, string(args[1]), c.consistency())
	if err != nil {
		c.writeErr(err)
		return
	}
	c.wr.Int(int64(n))
}

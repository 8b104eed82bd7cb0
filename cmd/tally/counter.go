package main

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"

	"tally/client"
)

func init() {
	register(&command{
		name:    "get",
		args:    "NAME [--stale]",
		summary: "read a counter",
		run:     runGet,
	})
	register(&command{
		name:    "incr",
		args:    "NAME [DELTA] [--key K] [--min N] [--max N] [--ttl D]",
		summary: "add DELTA (default 1) to a counter, optionally bounded or expiring",
		run:     func(e *env, args []string) error { return runWrite(e, args, "incr") },
	})
	register(&command{
		name:    "decr",
		args:    "NAME [DELTA] [--key K] [--min N] [--max N] [--ttl D]",
		summary: "subtract DELTA (default 1) from a counter, optionally bounded or expiring",
		run:     func(e *env, args []string) error { return runWrite(e, args, "decr") },
	})
}

func runGet(e *env, args []string) error {
	fs := e.flagSet()
	stale := fs.Bool("stale", false, "read the answering node's replica: no leader round trip, may lag")
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("get takes one NAME, got %d arguments", len(pos))
	}
	cons := client.Linearizable
	if *stale {
		cons = client.Stale
	}
	ctx, cancel := e.context()
	defer cancel()
	c, err := e.client().Get(ctx, pos[0], cons)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(c)
	}
	_, err = fmt.Fprintf(e.stdout, "%s = %d\n", c.Name, c.Value)
	return err
}

func runWrite(e *env, args []string, op string) error {
	fs := e.flagSet()
	key := fs.String("key", "", "idempotency key: repeating the command with the same `K` counts once (default: a random key)")
	var opts client.WriteOptions
	fs.Func("min", "apply only if the counter stays >= `N` (e.g. stock: --min 0)", intFlag(&opts.Min))
	fs.Func("max", "apply only if the counter stays <= `N` (e.g. a rate limit)", intFlag(&opts.Max))
	fs.DurationVar(&opts.TTL, "ttl", 0, "expire a counter this write creates after `D` (e.g. 1m: a fixed window)")
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		return usagef("%s takes NAME and an optional DELTA, got %d arguments", op, len(pos))
	}
	delta := int64(1)
	if len(pos) == 2 {
		if delta, err = strconv.ParseInt(pos[1], 10, 64); err != nil {
			return usagef("DELTA must be a 64-bit integer, not %q", pos[1])
		}
	}
	// The CLI picks the key itself (rather than letting the client do it)
	// so it can tell the user how to settle an unknown outcome.
	k := *key
	if k == "" {
		k = randomKey()
	}
	ctx, cancel := e.context()
	defer cancel()
	opts.Key = k
	write := e.client().Add
	if op == "decr" {
		write = e.client().Sub
	}
	r, err := write(ctx, pos[0], delta, opts)
	if client.IsOutcomeUnknown(err) {
		return &unknownOutcome{err: err, hint: fmt.Sprintf("tally %s %s %d --key %s%s", op, strconv.Quote(pos[0]), delta, k, optionFlags(opts))}
	}
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(r)
	}
	bound := ""
	if !r.Exact {
		bound = " (lower bound)" // a split counter's value after this write
	}
	_, err = fmt.Fprintf(e.stdout, "%s = %d%s\n", r.Name, r.Value, bound)
	return err
}

// unknownOutcome adds to an outcome-unknown error the command that settles
// it: the same key again either returns the first result or applies once.
type unknownOutcome struct {
	err  error
	hint string
}

func (u *unknownOutcome) Error() string {
	return fmt.Sprintf("%v; to settle it without counting twice, run: %s", u.err, u.hint)
}

func (u *unknownOutcome) Unwrap() error { return u.err }

// intFlag parses an int64 flag into *dst, leaving it nil when not given.
func intFlag(dst **int64) func(string) error {
	return func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("not a 64-bit integer: %q", v)
		}
		*dst = &n
		return nil
	}
}

// optionFlags renders the bounds and TTL back as flags, for the hint that
// repeats a command.
func optionFlags(o client.WriteOptions) string {
	s := ""
	if o.Min != nil {
		s += fmt.Sprintf(" --min %d", *o.Min)
	}
	if o.Max != nil {
		s += fmt.Sprintf(" --max %d", *o.Max)
	}
	if o.TTL != 0 {
		s += " --ttl " + o.TTL.String()
	}
	return s
}

func randomKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24
	return hex.EncodeToString(b[:])
}

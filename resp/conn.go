package resp

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"tally/auth"
	"tally/node"
)

// maxPipeline is how many buffered commands one round reads before it
// answers them, bounding the replies held for a client that pipelines
// without end.
const maxPipeline = 1024

// conn is one client connection.
type conn struct {
	s     *Server
	nc    net.Conn
	rd    *Reader
	wr    *Writer
	id    int64
	name  string
	quit  bool
	stale bool      // READONLY: reads answer from this node's replica
	role  auth.Role // what the connection's token allows (everything without tokens)
	// unauthDeadline: a read deadline bounds the wait for the next
	// command, since the connection has not authenticated.
	unauthDeadline bool

	// Shutdown closes an idle connection at once and a busy one after
	// it has answered what it is running.
	mu       sync.Mutex
	busy     bool
	draining bool

	// The pipeline being answered: its commands, and the adds among them
	// that go to the backend together.
	cmds []command
	adds []node.AddRequest
}

// command is one parsed command and, once run, where its reply waits.
type command struct {
	args [][]byte
	spec *spec
	add  int // index in adds, or -1
}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{s: s, nc: nc, rd: NewReader(nc, s.cfg.Limits), wr: NewWriter(nc), id: s.nextID.Add(1), role: auth.Admin}
	if s.cfg.Tokens.Enabled() {
		c.role = auth.None
	}
	return c
}

// serve answers commands until the client leaves, sends garbage, or the
// server closes.
func (c *conn) serve() {
	// A TLS client gets as long to finish its handshake as to send a
	// header over HTTP; idle after that is its right, as in Redis.
	if tc, ok := c.nc.(*tls.Conn); ok {
		tc.SetDeadline(time.Now().Add(c.s.cfg.AuthTimeout))
		if err := tc.Handshake(); err != nil {
			c.s.log.Debug("resp TLS handshake failed", "remote", c.nc.RemoteAddr().String(), "err", err)
			return
		}
		tc.SetDeadline(time.Time{})
	}
	for !c.quit {
		// Until it authenticates, a connection gets as long between
		// commands as a TLS handshake: idle unauthenticated connections
		// must not fill the server's slots. Once authenticated, idle is
		// its right.
		if c.role == auth.None {
			c.nc.SetReadDeadline(time.Now().Add(c.s.cfg.AuthTimeout))
			c.unauthDeadline = true
		} else if c.unauthDeadline {
			c.nc.SetReadDeadline(time.Time{})
			c.unauthDeadline = false
		}
		if err := c.readPipeline(); err != nil {
			var pe *ProtocolError
			if errors.As(err, &pe) {
				c.wr.Error("ERR " + pe.Error())
				c.flush()
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				c.s.log.Debug("resp connection ended", "remote", c.nc.RemoteAddr().String(), "err", err)
			}
			return
		}
		c.mu.Lock()
		if c.draining {
			c.mu.Unlock()
			return
		}
		c.busy = true
		c.mu.Unlock()
		c.run()
		err := c.flush()
		c.mu.Lock()
		c.busy = false
		draining := c.draining
		c.mu.Unlock()
		if err != nil || draining {
			return
		}
	}
}

// closeWhenIdle ends the connection once its current commands are
// answered (at once when it is waiting for commands).
func (c *conn) closeWhenIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.draining = true
	if !c.busy {
		c.nc.Close()
	}
}

// readPipeline blocks for one command, then takes every further command
// already buffered whole: what the client sent together is answered
// together.
func (c *conn) readPipeline() error {
	c.cmds = c.cmds[:0]
	for len(c.cmds) < maxPipeline {
		if len(c.cmds) > 0 && !c.rd.BufferedComplete() {
			break
		}
		args, err := c.rd.ReadCommand(nil)
		if err != nil {
			if len(c.cmds) > 0 && !errors.As(err, new(*ProtocolError)) {
				return nil // answer what came; the error returns next round
			}
			return err
		}
		if len(args) == 0 {
			continue // Redis ignores empty commands
		}
		c.cmds = append(c.cmds, command{args: args, add: -1})
	}
	return nil
}

// run answers the pipeline in order. Consecutive increments go to the
// backend in one call; any other command first waits for the increments
// before it, so a GET sees the INCRs sent ahead of it.
func (c *conn) run() {
	start := 0
	for i := range c.cmds {
		cmd := &c.cmds[i]
		cmd.spec = lookup(cmd.args[0])
		if cmd.spec != nil && cmd.spec.add != nil && arityOK(cmd.spec, len(cmd.args)) && c.denied(cmd.spec) == "" {
			continue
		}
		c.runAdds(start, i)
		c.runOne(cmd)
		start = i + 1
		if c.quit {
			return // QUIT: what came after it is not answered
		}
	}
	c.runAdds(start, len(c.cmds))
}

// runAdds answers cmds[from:to], all increments, with one call to the
// core per node.MaxBatchOps of them.
func (c *conn) runAdds(from, to int) {
	if from >= to {
		return
	}
	c.adds = c.adds[:0]
	errs := make([]error, to-from)
	for i := from; i < to; i++ {
		if moved := c.redirect(&c.cmds[i]); moved != "" {
			errs[i-from] = movedError(moved)
			continue
		}
		a, err := c.cmds[i].spec.add(c.cmds[i].args)
		if err != nil {
			errs[i-from] = err
			continue
		}
		c.cmds[i].add = len(c.adds)
		c.adds = append(c.adds, a)
	}
	outcomes := make([]node.AddOutcome, 0, len(c.adds))
	for len(outcomes) < len(c.adds) {
		chunk := c.adds[len(outcomes):min(len(c.adds), len(outcomes)+node.MaxBatchOps)]
		outcomes = append(outcomes, c.addBatch(chunk)...)
	}
	for i := from; i < to; i++ {
		switch cmd := &c.cmds[i]; {
		case errs[i-from] != nil:
			c.writeErr(errs[i-from])
		case outcomes[cmd.add].Err != nil:
			c.writeErr(outcomes[cmd.add].Err)
		default:
			c.wr.Int(outcomes[cmd.add].Result.Value)
		}
	}
}

// addBatch applies adds together. The core refuses a whole batch with
// one malformed request before applying any; then each add runs on its
// own, so only the malformed one fails, as it would alone.
func (c *conn) addBatch(adds []node.AddRequest) []node.AddOutcome {
	ctx, cancel := context.WithTimeout(c.s.ctx, c.s.cfg.Timeout)
	defer cancel()
	out, err := c.s.cfg.Core.AddBatch(ctx, adds)
	if err == nil {
		return out
	}
	out = make([]node.AddOutcome, len(adds))
	var e *node.Error
	if !errors.As(err, &e) || !e.Code.BadInput() {
		for i := range out {
			out[i].Err = asNodeError(err)
		}
		return out
	}
	for i, a := range adds {
		res, err := c.s.cfg.Core.Add(ctx, a)
		out[i] = node.AddOutcome{Result: res}
		if err != nil {
			out[i].Err = asNodeError(err)
		}
	}
	return out
}

// runOne answers a command that is not an increment.
func (c *conn) runOne(cmd *command) {
	switch {
	case cmd.spec == nil:
		c.wr.Error(unknownCommand(cmd.args))
	case !arityOK(cmd.spec, len(cmd.args)):
		c.wr.Error(wrongArity(cmd.spec.name))
	case c.denied(cmd.spec) != "":
		c.wr.Error(c.denied(cmd.spec))
	default:
		if moved := c.redirect(cmd); moved != "" {
			c.wr.Error(moved)
			return
		}
		ctx, cancel := context.WithTimeout(c.s.ctx, c.s.cfg.Timeout)
		cmd.spec.run(ctx, c, cmd.args)
		cancel()
	}
}

func (c *conn) flush() error {
	c.nc.SetWriteDeadline(time.Now().Add(c.s.cfg.WriteTimeout))
	return c.wr.Flush()
}

// writeErr writes err as a RESP error in Redis's words where Redis has
// them (see errors.go).
func (c *conn) writeErr(err error) { c.wr.Error(errorText(err)) }

package resp

import (
	"context"
	"errors"
	"io"
	"net"
	"time"
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
	stale bool // READONLY: reads answer from this node's replica

	// The pipeline being answered: its commands, and the adds among them
	// that go to the backend together.
	cmds    []command
	adds    []Add
	addCmds []int // index in cmds of each add
}

// command is one parsed command and, once run, where its reply waits.
type command struct {
	args [][]byte
	spec *spec
	add  int // index in adds, or -1
}

func newConn(s *Server, nc net.Conn) *conn {
	return &conn{s: s, nc: nc, rd: NewReader(nc, s.cfg.Limits), wr: NewWriter(nc), id: s.nextID.Add(1)}
}

// serve answers commands until the client leaves, sends garbage, or the
// server closes.
func (c *conn) serve() {
	for !c.quit {
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
		c.run()
		if err := c.flush(); err != nil {
			return
		}
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
		if cmd.spec != nil && cmd.spec.add != nil && arityOK(cmd.spec, len(cmd.args)) {
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

// runAdds answers cmds[from:to], all increments, with one backend call.
func (c *conn) runAdds(from, to int) {
	if from >= to {
		return
	}
	c.adds = c.adds[:0]
	c.addCmds = c.addCmds[:0]
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
		c.addCmds = append(c.addCmds, i)
	}
	var results []AddResult
	if len(c.adds) > 0 {
		ctx, cancel := context.WithTimeout(c.s.ctx, c.s.cfg.Timeout)
		results = c.s.cfg.Backend.Add(ctx, c.adds)
		cancel()
	}
	for i := from; i < to; i++ {
		switch cmd := &c.cmds[i]; {
		case errs[i-from] != nil:
			c.writeErr(errs[i-from])
		case results[cmd.add].Err != nil:
			c.writeErr(results[cmd.add].Err)
		default:
			c.wr.Int(results[cmd.add].Value)
		}
	}
}

// runOne answers a command that is not an increment.
func (c *conn) runOne(cmd *command) {
	switch {
	case cmd.spec == nil:
		c.wr.Error(unknownCommand(cmd.args))
	case !arityOK(cmd.spec, len(cmd.args)):
		c.wr.Error(wrongArity(cmd.spec.name))
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

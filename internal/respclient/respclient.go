// Package respclient is a minimal RESP2 (Redis protocol) client: dial with
// a timeout, send one command as an array of bulk strings, read its one
// reply (simple string, error, integer, bulk string or array), with bounded
// reply sizes and the caller's deadline on every call.
//
// It is hand-written rather than a client library because its user, the
// chaos workload, is linked into the tally CLI: that binary must not link
// raft (the server side, tally/resp, imports the node), and a general
// Redis client library would be a large dependency for one command. It
// also has to say exactly whether a failed call's command was handed to
// the connection, which decides whether a write may have happened, and
// client libraries retry or hide that.
package respclient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Limits bound what one reply may make the client hold; a reply past them
// is a protocol error (and ends the connection).
type Limits struct {
	MaxLine  int // bytes of a simple string, error or length line
	MaxBulk  int // bytes of one bulk string
	MaxArray int // elements of one array
	MaxDepth int // arrays nested in arrays
}

// DefaultLimits fit the replies of counter commands with room to spare.
var DefaultLimits = Limits{MaxLine: 64 << 10, MaxBulk: 1 << 20, MaxArray: 1 << 16, MaxDepth: 8}

func (l Limits) withDefaults() Limits {
	if l.MaxLine <= 0 {
		l.MaxLine = DefaultLimits.MaxLine
	}
	if l.MaxBulk <= 0 {
		l.MaxBulk = DefaultLimits.MaxBulk
	}
	if l.MaxArray <= 0 {
		l.MaxArray = DefaultLimits.MaxArray
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultLimits.MaxDepth
	}
	return l
}

// Kind is a reply's RESP2 type.
type Kind uint8

const (
	SimpleString Kind = iota + 1 // +OK
	Integer                      // :42
	Bulk                         // $2\r\n42 (Nil: $-1)
	Array                        // *2 ... (Nil: *-1)
	ErrorElem                    // -ERR ... inside an array (as EXEC answers); Str is its text
)

func (k Kind) String() string {
	switch k {
	case SimpleString:
		return "simple string"
	case Integer:
		return "integer"
	case Bulk:
		return "bulk string"
	case Array:
		return "array"
	case ErrorElem:
		return "error element"
	}
	return "kind " + strconv.Itoa(int(k))
}

// Reply is one reply that is not an error (an error reply is a
// ServerError; only an array's elements can be errors, ErrorElem).
type Reply struct {
	Kind  Kind
	Str   string  // SimpleString, Bulk, ErrorElem
	Int   int64   // Integer
	Elems []Reply // Array
	Nil   bool    // a nil bulk string or array
}

// ServerError is an error reply: "-CODE message". The connection stays
// usable after one.
type ServerError string

func (e ServerError) Error() string { return string(e) }

// Code is the error's first word (ERR, TRYAGAIN, ...), what clients
// switch on.
func (e ServerError) Code() string {
	code, _, _ := strings.Cut(string(e), " ")
	return code
}

// ConnError is a failure of the connection rather than a reply: dialing,
// writing, a deadline, a closed or reset connection, or a malformed
// reply. Sent says whether the whole command had been handed to the
// connection before it failed, so the server may have received and run
// it; when it is false the server cannot have run it (a command it did
// not receive whole is never run). After a ConnError the Conn is closed.
type ConnError struct {
	Sent bool
	Err  error
}

func (e *ConnError) Error() string {
	if e.Sent {
		return "resp: after the command was sent: " + e.Err.Error()
	}
	return "resp: command not sent: " + e.Err.Error()
}

func (e *ConnError) Unwrap() error { return e.Err }

// ProtocolError is a reply that is malformed or past the Limits.
type ProtocolError struct{ msg string }

func (e *ProtocolError) Error() string { return "protocol error: " + e.msg }

func protoErr(format string, a ...any) error { return &ProtocolError{msg: fmt.Sprintf(format, a...)} }

// ErrClosed is the error of a call on a closed (or broken) Conn.
var ErrClosed = errors.New("resp: connection closed")

// Conn is one connection. Its calls must not run concurrently.
type Conn struct {
	nc     net.Conn
	br     *bufio.Reader
	lim    Limits
	buf    []byte
	closed bool
}

// Dial connects to addr within timeout (and ctx).
func Dial(ctx context.Context, addr string, timeout time.Duration, lim Limits) (*Conn, error) {
	d := net.Dialer{Timeout: timeout}
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &ConnError{Err: err}
	}
	return NewConn(nc, lim), nil
}

// NewConn speaks RESP2 over nc, which the Conn now owns.
func NewConn(nc net.Conn, lim Limits) *Conn {
	return &Conn{nc: nc, br: bufio.NewReaderSize(nc, 4096), lim: lim.withDefaults()}
}

// Close closes the connection.
func (c *Conn) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	return c.nc.Close()
}

// Do sends args as one command and reads its reply, by ctx's deadline
// (ctx's end also cuts the call short). An error reply is a ServerError
// and leaves the connection usable; any other failure is a *ConnError and
// closes it (a late reply would otherwise be read as the next command's).
func (c *Conn) Do(ctx context.Context, args ...string) (Reply, error) {
	if c.closed {
		return Reply{}, &ConnError{Err: ErrClosed}
	}
	if len(args) == 0 {
		return Reply{}, errors.New("resp: empty command")
	}
	if err := ctx.Err(); err != nil {
		return Reply{}, c.fail(false, err)
	}
	dl, _ := ctx.Deadline() // zero: none
	if err := c.nc.SetDeadline(dl); err != nil {
		return Reply{}, c.fail(false, err)
	}
	// A canceled ctx moves the deadline to the past, which unblocks the
	// read or write under way.
	// Once Do returns that must not happen any more: the next call's
	// deadline would be overwritten.
	cut := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.nc.SetDeadline(time.Unix(1, 0))
		close(cut)
	})
	defer func() {
		if !stop() {
			<-cut
		}
	}()
	c.buf = AppendCommand(c.buf[:0], args...)
	n, err := c.nc.Write(c.buf)
	if err != nil {
		return Reply{}, c.fail(n == len(c.buf), c.ctxErr(ctx, err))
	}
	r, err := c.read(0)
	if err != nil {
		var se ServerError
		if errors.As(err, &se) {
			return Reply{}, se
		}
		return Reply{}, c.fail(true, c.ctxErr(ctx, err))
	}
	return r, nil
}

// ctxErr names ctx's end as the cause when it cut the call short.
func (c *Conn) ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%v)", cerr, err)
	}
	return err
}

func (c *Conn) fail(sent bool, err error) error {
	c.Close()
	return &ConnError{Sent: sent, Err: err}
}

// AppendCommand appends args as a RESP array of bulk strings to b.
func AppendCommand(b []byte, args ...string) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}

// read reads one reply; an error reply comes back as a ServerError.
func (c *Conn) read(depth int) (Reply, error) {
	line, err := c.line()
	if err != nil {
		return Reply{}, err
	}
	if len(line) == 0 {
		return Reply{}, protoErr("empty reply line")
	}
	body := line[1:]
	switch line[0] {
	case '+':
		return Reply{Kind: SimpleString, Str: string(body)}, nil
	case '-':
		return Reply{}, ServerError(body)
	case ':':
		n, err := strconv.ParseInt(string(body), 10, 64)
		if err != nil {
			return Reply{}, protoErr("bad integer %q", clip(body))
		}
		return Reply{Kind: Integer, Int: n}, nil
	case '$':
		n, err := c.length(body, c.lim.MaxBulk, "bulk")
		if err != nil {
			return Reply{}, err
		}
		if n < 0 {
			return Reply{Kind: Bulk, Nil: true}, nil
		}
		b := make([]byte, n+2)
		if _, err := io.ReadFull(c.br, b); err != nil {
			return Reply{}, unexpectedEOF(err)
		}
		if b[n] != '\r' || b[n+1] != '\n' {
			return Reply{}, protoErr("bulk string not followed by CRLF")
		}
		return Reply{Kind: Bulk, Str: string(b[:n])}, nil
	case '*':
		n, err := c.length(body, c.lim.MaxArray, "array")
		if err != nil {
			return Reply{}, err
		}
		if n < 0 {
			return Reply{Kind: Array, Nil: true}, nil
		}
		if depth >= c.lim.MaxDepth {
			return Reply{}, protoErr("arrays nested deeper than %d", c.lim.MaxDepth)
		}
		r := Reply{Kind: Array, Elems: make([]Reply, 0, min(n, 64))}
		for range n {
			e, err := c.read(depth + 1)
			var se ServerError
			switch {
			case errors.As(err, &se):
				// An error inside an array is an element, not the
				// call's failure.
				e = Reply{Kind: ErrorElem, Str: string(se)}
			case err != nil:
				return Reply{}, unexpectedEOF(err)
			}
			r.Elems = append(r.Elems, e)
		}
		return r, nil
	}
	return Reply{}, protoErr("unexpected reply type %q", line[0])
}

// length parses a bulk or array length: -1 (nil) or 0..max.
func (c *Conn) length(b []byte, max int, what string) (int, error) {
	n, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || n < -1 {
		return 0, protoErr("bad %s length %q", what, clip(b))
	}
	if n > int64(max) {
		return 0, protoErr("%s of %d past the limit of %d", what, n, max)
	}
	return int(n), nil
}

// line reads one CRLF-terminated line of at most MaxLine bytes, without
// the CRLF.
func (c *Conn) line() ([]byte, error) {
	var out []byte
	for {
		frag, err := c.br.ReadSlice('\n')
		if len(out)+len(frag) > c.lim.MaxLine+2 {
			return nil, protoErr("reply line longer than %d bytes", c.lim.MaxLine)
		}
		out = append(out, frag...)
		if err == nil {
			break
		}
		if len(out) == 0 {
			return nil, err // nothing of a reply came: io.EOF stays io.EOF
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, unexpectedEOF(err)
		}
	}
	if len(out) < 2 || out[len(out)-2] != '\r' {
		return nil, protoErr("reply line not ended by CRLF")
	}
	return out[:len(out)-2], nil
}

// unexpectedEOF: a reply cut off in the middle is io.ErrUnexpectedEOF,
// one that never started plain io.EOF.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func clip(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "..."
	}
	return string(b)
}

// Package resp serves tally over the Redis protocol (RESP2, and RESP3 after
// HELLO 3): redis-cli, redis-benchmark and every Redis client library can
// count with tally unmodified.
//
// The parser is tally's own rather than a library's: a counter service
// exposed to many clients must bound what one command can make it hold
// (argument count, bulk length, inline line, total bytes) and must know
// where a pipeline's buffered commands end, so that the commands a client
// sent together become one proposal per shard. Both are small here and
// would need a fork of a general-purpose server.
package resp

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// Limits bound the memory one command may take before it is refused.
type Limits struct {
	MaxArgs   int // arguments per command, the command name included
	MaxBulk   int // bytes of one argument
	MaxInline int // bytes of an inline (telnet-style) command line
	MaxBytes  int // bytes of all of one command's arguments together
}

// DefaultLimits fit counter commands (names are at most 256 bytes, MGET
// and DEL take at most a few thousand) with room to spare.
var DefaultLimits = Limits{MaxArgs: 8192, MaxBulk: 64 << 10, MaxInline: 64 << 10, MaxBytes: 4 << 20}

// ProtocolError is malformed input. Its text is Redis's own; after it the
// connection is closed, as Redis does, because the stream cannot be
// resynchronised.
type ProtocolError struct{ msg string }

func (e *ProtocolError) Error() string { return "Protocol error: " + e.msg }

func protoErr(format string, a ...any) error { return &ProtocolError{msg: fmt.Sprintf(format, a...)} }

// Reader reads commands from a client connection.
type Reader struct {
	br  *bufio.Reader
	lim Limits
}

// NewReader reads from r with the given limits (zero fields take the
// defaults).
func NewReader(r io.Reader, lim Limits) *Reader {
	if lim.MaxArgs <= 0 {
		lim.MaxArgs = DefaultLimits.MaxArgs
	}
	if lim.MaxBulk <= 0 {
		lim.MaxBulk = DefaultLimits.MaxBulk
	}
	if lim.MaxInline <= 0 {
		lim.MaxInline = DefaultLimits.MaxInline
	}
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultLimits.MaxBytes
	}
	return &Reader{br: bufio.NewReaderSize(r, 16<<10), lim: lim}
}

// Buffered is how many bytes have arrived but not been parsed: a client
// that pipelines has its next commands here.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// BufferedComplete reports whether a whole command is already buffered,
// so that reading it will not wait on the network. It looks only at what
// has arrived and never blocks.
func (r *Reader) BufferedComplete() bool {
	n := r.br.Buffered()
	if n == 0 {
		return false
	}
	b, _ := r.br.Peek(n)
	return completeCommand(b, r.lim)
}

// completeCommand reports whether b starts with a whole command.
func completeCommand(b []byte, lim Limits) bool {
	if b[0] != '*' {
		return bytes.IndexByte(b, '\n') >= 0
	}
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return false
	}
	count, err := strconv.Atoi(string(bytes.TrimRight(b[1:i], "\r")))
	if err != nil || count > lim.MaxArgs {
		return true // malformed: reading it fails at once
	}
	b = b[i+1:]
	for ; count > 0; count-- {
		i = bytes.IndexByte(b, '\n')
		if i < 0 {
			return false
		}
		if b[0] != '$' {
			return true
		}
		n, err := strconv.Atoi(string(bytes.TrimRight(b[1:i], "\r")))
		if err != nil || n < 0 || n > lim.MaxBulk {
			return true
		}
		if len(b) < i+1+n+2 {
			return false
		}
		b = b[i+1+n+2:]
	}
	return true
}

// ReadCommand reads the next command and returns its arguments (the
// command name first), appended to args[:0]. An empty command (an empty
// inline line, or a multibulk of count 0 or -1) yields no arguments;
// Redis ignores those. Arguments are freshly allocated and may be kept.
// A *ProtocolError means the input is malformed; any other error is the
// connection's.
func (r *Reader) ReadCommand(args [][]byte) ([][]byte, error) {
	args = args[:0]
	first, err := r.br.Peek(1)
	if err != nil {
		return args, err
	}
	if first[0] != '*' {
		return r.readInline(args)
	}
	line, err := r.readHeader()
	if err != nil {
		return args, err
	}
	count, err := strconv.ParseInt(string(line[1:]), 10, 64)
	if err != nil {
		return args, protoErr("invalid multibulk length")
	}
	if count <= 0 {
		return args, nil
	}
	if count > int64(r.lim.MaxArgs) {
		return args, protoErr("invalid multibulk length")
	}
	total := 0
	for i := int64(0); i < count; i++ {
		line, err := r.readHeader()
		if err != nil {
			return args, err
		}
		if line[0] != '$' {
			return args, protoErr("expected '$', got '%c'", line[0])
		}
		n, err := strconv.ParseInt(string(line[1:]), 10, 64)
		if err != nil || n < 0 || n > int64(r.lim.MaxBulk) {
			return args, protoErr("invalid bulk length")
		}
		total += int(n)
		if total > r.lim.MaxBytes {
			return args, protoErr("invalid bulk length")
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(r.br, buf); err != nil {
			return args, unexpectedEOF(err)
		}
		if buf[n] != '\r' || buf[n+1] != '\n' {
			return args, protoErr("invalid bulk length")
		}
		args = append(args, buf[:n:n])
	}
	return args, nil
}

// readHeader reads a "*N\r\n" or "$N\r\n" line without its line ending.
// Such lines are short; a long one is garbage.
func (r *Reader) readHeader() ([]byte, error) {
	line, err := r.br.ReadSlice('\n')
	switch {
	case errors.Is(err, bufio.ErrBufferFull) || (err == nil && len(line) > 32):
		return nil, protoErr("too big count string")
	case err != nil:
		return nil, unexpectedEOF(err)
	}
	line = bytes.TrimSuffix(line[:len(line)-1], []byte{'\r'})
	if len(line) < 2 {
		if len(line) == 1 && line[0] == '*' {
			return nil, protoErr("invalid multibulk length")
		}
		return nil, protoErr("invalid bulk length")
	}
	return line, nil
}

// readInline reads a telnet-style command: words separated by spaces,
// with Redis's quoting ("a b", 'c', \n and \xHH escapes in double quotes).
func (r *Reader) readInline(args [][]byte) ([][]byte, error) {
	var line []byte
	for {
		part, err := r.br.ReadSlice('\n')
		if len(line)+len(part) > r.lim.MaxInline {
			return args, protoErr("too big inline request")
		}
		line = append(line, part...)
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return args, unexpectedEOF(err)
		}
	}
	line = bytes.TrimRight(line, "\r\n")
	words, ok := splitInline(line)
	if !ok {
		return args, protoErr("unbalanced quotes in request")
	}
	if len(words) > r.lim.MaxArgs {
		return args, protoErr("invalid multibulk length")
	}
	return append(args, words...), nil
}

// splitInline splits an inline command line as Redis's sdssplitargs does.
func splitInline(line []byte) ([][]byte, bool) {
	var words [][]byte
	i := 0
	for {
		for i < len(line) && (line[i] == ' ' || line[i] == '\t') {
			i++
		}
		if i == len(line) {
			return words, true
		}
		var w []byte
		switch line[i] {
		case '"':
			i++
			for {
				if i == len(line) {
					return nil, false
				}
				c := line[i]
				if c == '\\' && i+3 < len(line) && line[i+1] == 'x' && isHex(line[i+2]) && isHex(line[i+3]) {
					v, _ := strconv.ParseUint(string(line[i+2:i+4]), 16, 8)
					w = append(w, byte(v))
					i += 4
					continue
				}
				if c == '\\' && i+1 < len(line) {
					switch e := line[i+1]; e {
					case 'n':
						w = append(w, '\n')
					case 'r':
						w = append(w, '\r')
					case 't':
						w = append(w, '\t')
					case 'b':
						w = append(w, '\b')
					case 'a':
						w = append(w, '\a')
					default:
						w = append(w, e)
					}
					i += 2
					continue
				}
				if c == '"' {
					i++
					// A closing quote must be followed by a space or the end.
					if i < len(line) && line[i] != ' ' && line[i] != '\t' {
						return nil, false
					}
					break
				}
				w = append(w, c)
				i++
			}
		case '\'':
			i++
			for {
				if i == len(line) {
					return nil, false
				}
				c := line[i]
				if c == '\\' && i+1 < len(line) && line[i+1] == '\'' {
					w = append(w, '\'')
					i += 2
					continue
				}
				if c == '\'' {
					i++
					if i < len(line) && line[i] != ' ' && line[i] != '\t' {
						return nil, false
					}
					break
				}
				w = append(w, c)
				i++
			}
		default:
			for i < len(line) && line[i] != ' ' && line[i] != '\t' {
				w = append(w, line[i])
				i++
			}
		}
		if w == nil {
			w = []byte{}
		}
		words = append(words, w)
	}
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// unexpectedEOF turns an EOF inside a command into io.ErrUnexpectedEOF:
// the client hung up half-way, which is not a clean close.
func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

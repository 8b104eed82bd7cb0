package resp

import (
	"io"
	"strconv"
	"strings"
)

// Writer buffers replies; Flush sends them in one write, so a pipeline's
// answers leave together.
type Writer struct {
	w     io.Writer
	b     []byte
	resp3 bool // HELLO 3: maps, null and booleans in RESP3's own types
}

// NewWriter writes replies to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w, b: make([]byte, 0, 4096)} }

// Buffered is how many bytes wait for Flush.
func (w *Writer) Buffered() int { return len(w.b) }

// Flush writes what is buffered.
func (w *Writer) Flush() error {
	if len(w.b) == 0 {
		return nil
	}
	_, err := w.w.Write(w.b)
	if cap(w.b) > 64<<10 {
		w.b = make([]byte, 0, 4096) // do not keep a huge reply's buffer
	} else {
		w.b = w.b[:0]
	}
	return err
}

// Simple writes +s. s must not contain CR or LF.
func (w *Writer) Simple(s string) {
	w.b = append(w.b, '+')
	w.b = append(w.b, s...)
	w.b = append(w.b, '\r', '\n')
}

// Error writes -msg; msg starts with its code (ERR, WRONGTYPE, ...). Line
// breaks in msg become spaces: an error is one line.
func (w *Writer) Error(msg string) {
	w.b = append(w.b, '-')
	w.b = append(w.b, strings.NewReplacer("\r", " ", "\n", " ").Replace(msg)...)
	w.b = append(w.b, '\r', '\n')
}

// Int writes :n.
func (w *Writer) Int(n int64) {
	w.b = append(w.b, ':')
	w.b = strconv.AppendInt(w.b, n, 10)
	w.b = append(w.b, '\r', '\n')
}

// Bulk writes $len\r\nb\r\n.
func (w *Writer) Bulk(b []byte) {
	w.b = append(w.b, '$')
	w.b = strconv.AppendInt(w.b, int64(len(b)), 10)
	w.b = append(w.b, '\r', '\n')
	w.b = append(w.b, b...)
	w.b = append(w.b, '\r', '\n')
}

// BulkString is Bulk of a string.
func (w *Writer) BulkString(s string) {
	w.b = append(w.b, '$')
	w.b = strconv.AppendInt(w.b, int64(len(s)), 10)
	w.b = append(w.b, '\r', '\n')
	w.b = append(w.b, s...)
	w.b = append(w.b, '\r', '\n')
}

// BulkInt writes n as a bulk string, as Redis's GET answers a counter.
func (w *Writer) BulkInt(n int64) {
	var tmp [20]byte
	w.Bulk(strconv.AppendInt(tmp[:0], n, 10))
}

// Null writes the null reply: $-1 in RESP2, _ in RESP3.
func (w *Writer) Null() {
	if w.resp3 {
		w.b = append(w.b, '_', '\r', '\n')
		return
	}
	w.b = append(w.b, '$', '-', '1', '\r', '\n')
}

// Array writes the header of an n-element array.
func (w *Writer) Array(n int) {
	w.b = append(w.b, '*')
	w.b = strconv.AppendInt(w.b, int64(n), 10)
	w.b = append(w.b, '\r', '\n')
}

// Map writes the header of an n-pair map: %n in RESP3, an array of 2n
// elements in RESP2 (how Redis answers HELLO and CONFIG GET there).
func (w *Writer) Map(n int) {
	if w.resp3 {
		w.b = append(w.b, '%')
		w.b = strconv.AppendInt(w.b, int64(n), 10)
		w.b = append(w.b, '\r', '\n')
		return
	}
	w.Array(2 * n)
}

// Bool writes a boolean: #t/#f in RESP3, :1/:0 in RESP2.
func (w *Writer) Bool(v bool) {
	if w.resp3 {
		if v {
			w.b = append(w.b, '#', 't', '\r', '\n')
		} else {
			w.b = append(w.b, '#', 'f', '\r', '\n')
		}
		return
	}
	if v {
		w.Int(1)
	} else {
		w.Int(0)
	}
}

// Verbatim writes a text blob that redis-cli prints as is (INFO, CLUSTER
// NODES): a bulk string in RESP2, a verbatim string in RESP3.
func (w *Writer) Verbatim(s string) {
	if !w.resp3 {
		w.BulkString(s)
		return
	}
	w.b = append(w.b, '=')
	w.b = strconv.AppendInt(w.b, int64(len(s)+4), 10)
	w.b = append(w.b, '\r', '\n')
	w.b = append(w.b, "txt:"...)
	w.b = append(w.b, s...)
	w.b = append(w.b, '\r', '\n')
}

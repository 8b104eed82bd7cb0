package resp

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

func readAll(t *testing.T, input string, lim Limits) ([][]string, error) {
	t.Helper()
	r := NewReader(strings.NewReader(input), lim)
	var out [][]string
	var args [][]byte
	for {
		var err error
		args, err = r.ReadCommand(args)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
		var cmd []string
		for _, a := range args {
			cmd = append(cmd, string(a))
		}
		out = append(out, cmd)
	}
}

func TestReadCommands(t *testing.T) {
	cases := []struct {
		in   string
		want [][]string
	}{
		{"*2\r\n$4\r\nINCR\r\n$1\r\na\r\n", [][]string{{"INCR", "a"}}},
		{"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$0\r\n\r\n", [][]string{{"PING"}, {"GET", ""}}},
		{"*0\r\n*-1\r\n*1\r\n$4\r\nPING\r\n", [][]string{nil, nil, {"PING"}}},
		{"PING\r\n", [][]string{{"PING"}}},
		{"incrby  k 5\n", [][]string{{"incrby", "k", "5"}}},
		{"set \"a b\" 'c d' \"\\x41\\n\"\r\n", [][]string{{"set", "a b", "c d", "A\n"}}},
		{"\r\nPING\r\n", [][]string{nil, {"PING"}}},
		{"*1\r\n$4\r\na\r\nb\r\n", [][]string{{"a\r\nb"}}}, // binary-safe bulk
	}
	for _, c := range cases {
		got, err := readAll(t, c.in, Limits{})
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if len(got) != len(c.want) {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
			continue
		}
		for i := range got {
			if strings.Join(got[i], "|") != strings.Join(c.want[i], "|") || len(got[i]) != len(c.want[i]) {
				t.Errorf("%q: command %d = %q, want %q", c.in, i, got[i], c.want[i])
			}
		}
	}
}

func TestReadCommandRejectsMalformed(t *testing.T) {
	lim := Limits{MaxArgs: 16, MaxBulk: 1024, MaxInline: 64, MaxBytes: 4096}
	cases := map[string]string{
		"*abc\r\n":                       "invalid multibulk length",
		"*17\r\n":                        "invalid multibulk length",
		"*99999999999999999999\r\n":      "invalid multibulk length",
		"*1\r\n$-5\r\n":                  "invalid bulk length",
		"*1\r\n$1025\r\n":                "invalid bulk length",
		"*1\r\n$9223372036854775807\r\n": "invalid bulk length",
		"*1\r\n:5\r\n":                   "expected '$', got ':'",
		"*1\r\n$3\r\nabcd\r\n":           "invalid bulk length",
		"*5\r\n$1000\r\n" + strings.Repeat("x", 1000) + "\r\n$1000\r\n" + strings.Repeat("x", 1000) + "\r\n$1000\r\n" + strings.Repeat("x", 1000) + "\r\n$1000\r\n" + strings.Repeat("x", 1000) + "\r\n$1000\r\n": "invalid bulk length",
		strings.Repeat("a", 100) + "\r\n":      "too big inline request",
		"set \"abc\r\n":                        "unbalanced quotes",
		"set \"a\"b\r\n":                       "unbalanced quotes",
		"*" + strings.Repeat("1", 40) + "\r\n": "too big count string",
	}
	for in, want := range cases {
		_, err := readAll(t, in, lim)
		var pe *ProtocolError
		if !errors.As(err, &pe) || !strings.Contains(err.Error(), want) {
			t.Errorf("%.40q: err = %v, want a protocol error with %q", in, err, want)
		}
	}
}

func TestReadCommandHalfSent(t *testing.T) {
	for _, in := range []string{"*2\r\n$4\r\nINCR\r\n", "*2\r\n$4\r\nIN", "*2\r", "PING"} {
		_, err := readAll(t, in, Limits{})
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%q: err = %v, want unexpected EOF", in, err)
		}
	}
}

// A declared length is not an allocation: a client announcing a huge bulk
// is refused before anything of that size is made.
func TestReadCommandHugeLengthAllocatesNothing(t *testing.T) {
	in := "*1\r\n$" + strconv.Itoa(1<<40) + "\r\n"
	allocs := testing.AllocsPerRun(10, func() {
		r := NewReader(strings.NewReader(in), Limits{})
		if _, err := r.ReadCommand(nil); err == nil {
			t.Fatal("accepted")
		}
	})
	// The reader's own buffer and the error; nothing sized by the client.
	if allocs > 8 {
		t.Errorf("%.0f allocations", allocs)
	}
}

func TestBufferedComplete(t *testing.T) {
	full := "*2\r\n$4\r\nINCR\r\n$1\r\na\r\n"
	for cut := 1; cut < len(full); cut++ {
		r := NewReader(strings.NewReader(full[:cut]), Limits{})
		r.br.Peek(cut) // fill the buffer
		if r.BufferedComplete() {
			t.Errorf("prefix %q reported complete", full[:cut])
		}
	}
	r := NewReader(strings.NewReader(full+full[:5]), Limits{})
	r.br.Peek(len(full) + 5)
	if !r.BufferedComplete() {
		t.Fatal("whole command not reported complete")
	}
	if _, err := r.ReadCommand(nil); err != nil {
		t.Fatal(err)
	}
	if r.BufferedComplete() {
		t.Error("a partial second command reported complete")
	}
}

// encodeCommand is how clients send a command.
func encodeCommand(args [][]byte) []byte {
	var b bytes.Buffer
	b.WriteString("*" + strconv.Itoa(len(args)) + "\r\n")
	for _, a := range args {
		b.WriteString("$" + strconv.Itoa(len(a)) + "\r\n")
		b.Write(a)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// FuzzReader: any input either parses or fails cleanly, never panics or
// exceeds the limits; a command encoded as clients do reads back exactly.
func FuzzReader(f *testing.F) {
	f.Add([]byte("*2\r\n$4\r\nINCR\r\n$1\r\na\r\n"), []byte("k"))
	f.Add([]byte("PING \"a\\x00\" 'b'\r\n"), []byte{})
	f.Add([]byte("*1\r\n$-1\r\n"), []byte("\r\n"))
	f.Fuzz(func(t *testing.T, in, arg []byte) {
		lim := Limits{MaxArgs: 64, MaxBulk: 256, MaxInline: 512, MaxBytes: 2048}
		r := NewReader(bytes.NewReader(in), lim)
		var args [][]byte
		for i := 0; i < 100; i++ {
			var err error
			args, err = r.ReadCommand(args)
			if err != nil {
				break
			}
			if len(args) > lim.MaxArgs {
				t.Fatalf("%d args", len(args))
			}
			for _, a := range args {
				if len(a) > lim.MaxBulk && len(a) > lim.MaxInline {
					t.Fatalf("argument of %d bytes", len(a))
				}
			}
		}
		if len(arg) > lim.MaxBulk {
			return
		}
		want := [][]byte{[]byte("SET"), arg, []byte("1")}
		got, err := NewReader(bytes.NewReader(encodeCommand(want)), lim).ReadCommand(nil)
		if err != nil || len(got) != 3 || !bytes.Equal(got[1], arg) {
			t.Fatalf("round trip of %q: %q, %v", arg, got, err)
		}
	})
}

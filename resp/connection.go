package resp

import (
	"context"
	"path"
	"sort"
	"strconv"
	"strings"

	"tally/auth"
)

// The connection and introspection commands that redis-cli,
// redis-benchmark and client libraries send on their own.

// compatVersion is the Redis version tally answers as: libraries gate
// features (HELLO, CLIENT SETINFO) on it, and tally speaks what that
// version's clients send for counters.
const compatVersion = "7.2.0"

func init() {
	register(&spec{name: "ping", arity: -1, flags: []string{"fast"}, run: cmdPing})
	register(&spec{name: "echo", arity: 2, flags: []string{"fast"}, run: func(_ context.Context, c *conn, args [][]byte) { c.wr.Bulk(args[1]) }})
	register(&spec{name: "hello", arity: -1, flags: []string{"fast", "no-auth"}, run: cmdHello})
	register(&spec{name: "auth", arity: -2, flags: []string{"fast", "no-auth"}, run: cmdAuth})
	register(&spec{name: "select", arity: 2, flags: []string{"fast"}, run: cmdSelect})
	register(&spec{name: "quit", arity: -1, flags: []string{"fast", "no-auth"}, run: func(_ context.Context, c *conn, _ [][]byte) { c.wr.Simple("OK"); c.quit = true }})
	register(&spec{name: "client", arity: -2, run: cmdClient})
	register(&spec{name: "command", arity: -1, run: cmdCommand})
	register(&spec{name: "info", arity: -1, run: cmdInfo})
	register(&spec{name: "config", arity: -2, run: cmdConfig})
	register(&spec{name: "readonly", arity: 1, flags: []string{"fast"}, run: func(_ context.Context, c *conn, _ [][]byte) { c.stale = true; c.wr.Simple("OK") }})
	register(&spec{name: "readwrite", arity: 1, flags: []string{"fast"}, run: func(_ context.Context, c *conn, _ [][]byte) { c.stale = false; c.wr.Simple("OK") }})
}

func cmdPing(_ context.Context, c *conn, args [][]byte) {
	switch len(args) {
	case 1:
		c.wr.Simple("PONG")
	case 2:
		c.wr.Bulk(args[1])
	default:
		c.wr.Error(wrongArity("ping"))
	}
}

// HELLO [protover [AUTH username password] [SETNAME clientname]]
func cmdHello(_ context.Context, c *conn, args [][]byte) {
	proto := 2
	if c.wr.resp3 {
		proto = 3
	}
	if len(args) > 1 {
		v, ok := parseInt(args[1])
		if !ok {
			c.wr.Error("ERR Protocol version is not an integer or out of range")
			return
		}
		if v != 2 && v != 3 {
			c.wr.Error("NOPROTO unsupported protocol version")
			return
		}
		proto = int(v)
	}
	name, setName := c.name, false
	var token []byte
	for i := 2; i < len(args); i++ {
		switch upper(args[i]) {
		case "AUTH":
			if i+2 >= len(args) {
				c.wr.Error(errSyntax)
				return
			}
			token = args[i+2] // checked once every option parsed
			i += 2
		case "SETNAME":
			if i+1 >= len(args) {
				c.wr.Error(errSyntax)
				return
			}
			if !validClientName(args[i+1]) {
				c.wr.Error(errClientName)
				return
			}
			name, setName = string(args[i+1]), true
			i++
		default:
			c.wr.Error(errSyntax)
			return
		}
	}
	// The user name is not checked: a token alone says who may do what.
	switch {
	case token != nil && c.s.cfg.Tokens.Enabled():
		if !c.authenticate(token) {
			c.wr.Error(errWrongPass)
			return
		}
	case c.role == auth.None:
		c.wr.Error(errHelloAuth)
		return
	}
	if setName {
		c.name = name
	}
	c.wr.resp3 = proto == 3
	c.wr.Map(7)
	c.wr.BulkString("server")
	c.wr.BulkString("redis")
	c.wr.BulkString("version")
	c.wr.BulkString(compatVersion)
	c.wr.BulkString("proto")
	c.wr.Int(int64(proto))
	c.wr.BulkString("id")
	c.wr.Int(c.id)
	c.wr.BulkString("mode")
	if c.s.cfg.Router != nil {
		c.wr.BulkString("cluster")
	} else {
		c.wr.BulkString("standalone")
	}
	c.wr.BulkString("role")
	c.wr.BulkString("master")
	c.wr.BulkString("modules")
	c.wr.Array(0)
}

// AUTH token | AUTH username token
func cmdAuth(_ context.Context, c *conn, args [][]byte) {
	switch {
	case len(args) > 3:
		c.wr.Error(errSyntax)
	case !c.s.cfg.Tokens.Enabled():
		c.wr.Error("ERR AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
	case !c.authenticate(args[len(args)-1]):
		c.wr.Error(errWrongPass)
	default:
		c.wr.Simple("OK")
	}
}

func cmdSelect(_ context.Context, c *conn, args [][]byte) {
	v, ok := parseInt(args[1])
	switch {
	case !ok:
		c.wr.Error(errNotInteger)
	case v != 0:
		c.wr.Error("ERR DB index is out of range")
	default:
		c.wr.Simple("OK")
	}
}

const errClientName = "ERR Client names cannot contain spaces, newlines or special characters."

func validClientName(b []byte) bool {
	for _, ch := range b {
		if ch < '!' || ch > '~' {
			return false
		}
	}
	return true
}

func cmdClient(_ context.Context, c *conn, args [][]byte) {
	sub := upper(args[1])
	switch {
	case sub == "SETNAME" && len(args) == 3:
		if !validClientName(args[2]) {
			c.wr.Error(errClientName)
			return
		}
		c.name = string(args[2])
		c.wr.Simple("OK")
	case sub == "GETNAME" && len(args) == 2:
		if c.name == "" {
			c.wr.Null()
		} else {
			c.wr.BulkString(c.name)
		}
	case sub == "ID" && len(args) == 2:
		c.wr.Int(c.id)
	case sub == "SETINFO" && len(args) == 4:
		switch upper(args[2]) {
		case "LIB-NAME", "LIB-VER":
			c.wr.Simple("OK")
		default:
			c.wr.Error("ERR Unrecognized option '" + clip(args[2]) + "'")
		}
	case (sub == "INFO" || sub == "LIST") && len(args) == 2:
		c.wr.Verbatim("id=" + strconv.FormatInt(c.id, 10) + " addr=" + c.nc.RemoteAddr().String() + " name=" + c.name + " db=0\n")
	case (sub == "NO-EVICT" || sub == "NO-TOUCH") && len(args) == 3:
		c.wr.Simple("OK")
	case sub == "SETNAME" || sub == "GETNAME" || sub == "ID" || sub == "SETINFO" || sub == "INFO" || sub == "LIST":
		c.wr.Error("ERR wrong number of arguments for 'client|" + strings.ToLower(sub) + "' command")
	default:
		c.wr.Error("ERR unknown subcommand '" + clip(args[1]) + "'. Try CLIENT HELP.")
	}
}

// COMMAND, COMMAND COUNT, COMMAND INFO name..., COMMAND DOCS [name...]
func cmdCommand(_ context.Context, c *conn, args [][]byte) {
	if len(args) == 1 {
		names := make([]string, 0, len(commands))
		for n := range commands {
			names = append(names, n)
		}
		sort.Strings(names)
		c.wr.Array(len(names))
		for _, n := range names {
			writeCommandInfo(c.wr, commands[n])
		}
		return
	}
	switch upper(args[1]) {
	case "COUNT":
		c.wr.Int(int64(len(commands)))
	case "INFO":
		c.wr.Array(len(args) - 2)
		for _, a := range args[2:] {
			if s := lookup(a); s != nil {
				writeCommandInfo(c.wr, s)
			} else {
				c.wr.Null()
			}
		}
	case "DOCS":
		c.wr.Map(0) // redis-cli's hints are optional
	default:
		c.wr.Error("ERR unknown subcommand '" + clip(args[1]) + "'. Try COMMAND HELP.")
	}
}

// writeCommandInfo writes one COMMAND INFO entry in Redis 7's ten-element
// form.
func writeCommandInfo(w *Writer, s *spec) {
	w.Array(10)
	w.BulkString(s.name)
	w.Int(int64(s.arity))
	w.Array(len(s.flags))
	for _, f := range s.flags {
		w.Simple(f)
	}
	w.Int(int64(s.first))
	w.Int(int64(s.last))
	w.Int(int64(s.step))
	w.Array(0) // ACL categories
	w.Array(0) // tips
	w.Array(0) // key specs
	w.Array(0) // subcommands
}

func cmdInfo(_ context.Context, c *conn, _ [][]byte) {
	var b strings.Builder
	b.WriteString("# Server\r\n")
	b.WriteString("redis_version:" + compatVersion + "\r\n")
	if c.s.cfg.Router != nil {
		b.WriteString("redis_mode:cluster\r\n")
	} else {
		b.WriteString("redis_mode:standalone\r\n")
	}
	b.WriteString("tally_node:" + c.s.cfg.NodeID + "\r\n")
	b.WriteString("\r\n# Clients\r\n")
	b.WriteString("connected_clients:" + strconv.FormatInt(c.s.open.Load(), 10) + "\r\n")
	b.WriteString("\r\n# Replication\r\nrole:master\r\n")
	if c.s.cfg.Router != nil {
		b.WriteString("\r\n# Cluster\r\ncluster_enabled:1\r\n")
	}
	c.wr.Verbatim(b.String())
}

// configParams are the Redis settings whose meaning tally has, with
// tally's answer: every write is in an fsync'd log on a quorum before it is
// acknowledged (appendonly, appendfsync always), there are no RDB
// snapshots to configure, and there is one database. Clients such as
// redis-benchmark read them; anything else reads as absent.
var configParams = [][2]string{
	{"appendfsync", "always"},
	{"appendonly", "yes"},
	{"databases", "1"},
	{"save", ""},
}

// CONFIG GET pattern [pattern ...]
func cmdConfig(_ context.Context, c *conn, args [][]byte) {
	switch upper(args[1]) {
	case "GET":
		if len(args) < 3 {
			c.wr.Error("ERR wrong number of arguments for 'config|get' command")
			return
		}
		var found [][2]string
		for _, p := range configParams {
			for _, pat := range args[2:] {
				if ok, _ := path.Match(strings.ToLower(string(pat)), p[0]); ok {
					found = append(found, p)
					break
				}
			}
		}
		c.wr.Map(len(found))
		for _, p := range found {
			c.wr.BulkString(p[0])
			c.wr.BulkString(p[1])
		}
	default:
		c.wr.Error("ERR CONFIG " + clip(args[1]) + " is not supported: tally is configured by tallyd's flags")
	}
}

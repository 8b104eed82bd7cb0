package httpapi

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"tally/auth"
	"tally/node"
	"tally/placement"
	"tally/transport"
)

// echoCore answers every operation at once, as a healthy node would, so
// that fuzzing exercises the API's own parsing, checks and rendering.
type echoCore struct {
	tokens *auth.Tokens
	reg    *prometheus.Registry
	faults *transport.Faults
}

func (echoCore) ID() string       { return "n1" }
func (echoCore) RaftAddr() string { return "127.0.0.1:7071" }
func (c echoCore) Config() node.Config {
	return node.Config{ID: "n1", EnableFaults: true, Tokens: c.tokens}
}
func (echoCore) Formed() bool          { return true }
func (echoCore) FormationError() error { return nil }
func (echoCore) Ready() bool           { return true }
func (echoCore) ShardCount() int       { return 8 }
func (echoCore) KeyPlacement() placement.Map {
	return placement.Map{Scheme: placement.Slots, Shards: 8}
}
func (c echoCore) Metrics() *prometheus.Registry { return c.reg }
func (c echoCore) Faults() *transport.Faults     { return c.faults }
func (echoCore) Add(_ context.Context, r node.AddRequest) (node.AddResult, error) {
	return node.AddResult{Value: r.Delta, Exact: true}, nil
}
func (c echoCore) AddBatch(ctx context.Context, rs []node.AddRequest) ([]node.AddOutcome, error) {
	out := make([]node.AddOutcome, len(rs))
	for i, r := range rs {
		out[i].Result, _ = c.Add(ctx, r)
	}
	return out, nil
}
func (echoCore) Read(_ context.Context, r node.ReadRequest) (node.ReadResult, error) {
	return node.ReadResult{Name: r.Name}, nil
}
func (echoCore) ReadMany(_ context.Context, names []string, _ node.Consistency) ([]node.ReadResult, error) {
	out := make([]node.ReadResult, len(names))
	for i, n := range names {
		out[i].Name = n
	}
	return out, nil
}
func (echoCore) Like(context.Context, node.ActorRequest) (node.ActorResult, error) {
	return node.ActorResult{Changed: true, Value: 1}, nil
}
func (echoCore) Unlike(context.Context, node.ActorRequest) (node.ActorResult, error) {
	return node.ActorResult{}, nil
}
func (echoCore) IsMember(context.Context, node.MemberRequest) (bool, error) { return false, nil }
func (echoCore) Split(_ context.Context, r node.SplitRequest) (node.SplitResult, error) {
	return node.SplitResult{}, nil
}
func (echoCore) Watch(context.Context, string, node.Consistency) (*node.Watch, error) {
	return nil, &node.Error{Code: node.CodeUnavailable, Message: "no watches here"}
}
func (echoCore) Delete(context.Context, string) (bool, error) { return true, nil }

// The feed answers one event and then ends, as at a node's shutdown.
func (echoCore) ReadChanges(_ context.Context, c node.Cursor) ([]node.ChangeEvent, node.Cursor, error) {
	next := append(node.Cursor(nil), c...)
	next[0]++
	return []node.ChangeEvent{{Shard: 0, Index: next[0], Changes: []node.CounterChange{{Name: "a", Value: 1, Delta: 1}}}}, next, nil
}
func (echoCore) NowCursor(context.Context) (node.Cursor, error) { return make(node.Cursor, 8), nil }
func (echoCore) WaitChanges(context.Context, node.Cursor) bool  { return false }
func (echoCore) Dump(_ context.Context, fn func(int, node.DumpedCounter) error) (node.Cursor, error) {
	if err := fn(1, node.DumpedCounter{Name: "a", Value: 3}); err != nil {
		return nil, err
	}
	return make(node.Cursor, 8), nil
}
func (echoCore) ClusterDetail(context.Context) node.ClusterStatus {
	return node.ClusterStatus{Node: "n1"}
}
func (echoCore) Decommission(context.Context, string) (node.NodeChange, error) {
	return node.NodeChange{}, nil
}
func (echoCore) RemoveNode(context.Context, string) (node.NodeChange, error) {
	return node.NodeChange{}, nil
}
func (echoCore) HotReport() node.HotReport        { return node.HotReport{} }
func (echoCore) ShardDigests() []node.ShardDigest { return nil }

// FuzzRouter: any method, path, header and body through the whole router
// is answered without a panic; an error is the documented JSON; and with
// tokens on, nothing but /healthz and /readyz succeeds without a token
// whose role covers the call.
func FuzzRouter(f *testing.F) {
	f.Add("POST", "/v1/counters/c/incr", `{"delta": 5, "min": 0, "max": 9}`, "Bearer write-token-0123456789", "k1")
	f.Add("GET", "/v1/counters?name=a&name=b", "", "Bearer read-token-0123456789", "")
	f.Add("POST", "/v1/batch", `{"ops":[{"op":"incr","name":"a"},{"op":"get","name":"b"}]}`, "Bearer admin-token-0123456789", "")
	f.Add("POST", "/v1/counters/c/split", `{"n": 4}`, "Bearer write-token-0123456789", "")
	f.Add("PUT", "/v1/counters/c/actors/u1", "", "bearer read-token-0123456789", "")
	f.Add("DELETE", "/v1/cluster/nodes/n2", "", "", "")
	f.Add("POST", "/v1/faults", `{"block":["127.0.0.1:1"]}`, "Bearer admin-token-0123456789", "")
	f.Add("GET", "/healthz", "", "", "")
	tokens, err := auth.Parse([]byte("read-token-0123456789 read\nwrite-token-0123456789 write\nadmin-token-0123456789 admin\n"))
	if err != nil {
		f.Fatal(err)
	}
	// A real fault switch, on a transport that no peer ever dials.
	mux, err := transport.Listen("127.0.0.1:0", "", true, slog.New(slog.DiscardHandler))
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { mux.Close() })
	open := Handler(echoCore{reg: prometheus.NewRegistry(), faults: mux.Faults()})
	guarded := Handler(echoCore{tokens: tokens, reg: prometheus.NewRegistry(), faults: mux.Faults()})
	f.Fuzz(func(t *testing.T, method, path, body, authz, key string) {
		if !validMethod(method) || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \r\n\t#") {
			return // http.NewRequest refuses these; a server never routes them
		}
		for _, h := range []http.Handler{open, guarded} {
			req, err := http.NewRequest(method, "http://n1"+path, strings.NewReader(body))
			if err != nil {
				return
			}
			req.Header.Set("Authorization", authz)
			if key != "" {
				req.Header.Set("Idempotency-Key", key)
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			code := w.Code
			if code < 200 || code > 599 {
				t.Fatalf("%s %s: status %d", method, path, code)
			}
			if code >= 500 {
				t.Fatalf("%s %s: %d from a healthy core: %s", method, path, code, w.Body)
			}
			if code >= 400 {
				var e struct {
					Error struct{ Code, Message string }
				}
				if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code == "" {
					t.Fatalf("%s %s: %d answer is not a JSON error: %q", method, path, code, w.Body)
				}
			}
			if h == guarded && code < 300 {
				need := requiredRole(req)
				if got := tokens.Role(bearer(req)); got < need {
					t.Fatalf("%s %s answered %d to a %v token; it needs %v", method, path, code, got, need)
				}
			}
		}
	})
}

func validMethod(m string) bool {
	switch m {
	case "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS":
		return true
	}
	return false
}

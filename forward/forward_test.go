package forward

import (
	"context"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"tally/fsm"
	"tally/shard"
)

// fakeLocal answers each request type with values derived from the
// request, so a test sees every field cross the wire both ways.
type fakeLocal struct{}

func (fakeLocal) Write(_ context.Context, req WriteRequest) (WriteResponse, error) {
	if req.Shard == 9 {
		return WriteResponse{}, &shard.NotLeaderError{LeaderID: "n2", LeaderAddr: "127.0.0.1:9"}
	}
	out := make([]fsm.Result, len(req.Ops))
	for i, op := range req.Ops {
		out[i] = fsm.Result{Value: op.Delta * 10, Code: fsm.ErrOutOfBounds, Changed: true, ExpiresAt: -5, Split: uint16(req.Shard)}
	}
	return WriteResponse{Results: out}, nil
}

func (fakeLocal) Read(_ context.Context, req ReadRequest) (ReadResponse, error) {
	if req.Shard == 9 {
		return ReadResponse{}, ErrNoShard
	}
	out := make([]shard.Lookup, len(req.Names))
	for i, n := range req.Names {
		out[i] = shard.Lookup{Value: int64(len(n)), ExpiresAt: int64(i), Split: int(req.Shard)}
		if req.Linearizable {
			out[i].Value = -out[i].Value
		}
	}
	return ReadResponse{Values: out}, nil
}

func (l fakeLocal) ReadAt(ctx context.Context, req ReadAtRequest) (ReadAtResponse, error) {
	r, err := l.Read(ctx, ReadRequest(req))
	return ReadAtResponse{Index: 1000 + uint64(req.Shard), Values: r.Values}, err
}

func (fakeLocal) Changes(_ context.Context, req ChangesRequest) (ChangesResponse, error) {
	if req.After < 10 {
		return ChangesResponse{Status: ChangesExpired, Floor: 10}, nil
	}
	b := shard.ChangeBatch{Index: req.After + 1, Time: -7, Changes: []fsm.Change{{Name: "a", Old: -1, Value: 5}, {Name: "b/2", Old: 3, Value: 0}}}
	return ChangesResponse{Page: shard.ChangesPage{Batches: []shard.ChangeBatch{b}, Through: req.After + uint64(req.Max)}}, nil
}

func (fakeLocal) Dump(_ context.Context, req DumpRequest) (DumpResponse, error) {
	return DumpResponse{Index: 77 + uint64(req.Shard), Counters: []shard.NamedValue{{Name: "a", Value: -2}, {Name: "b/1", Value: 9}}}, nil
}

func (fakeLocal) Member(_ context.Context, req MemberRequest) (MemberResponse, error) {
	return MemberResponse{Member: req.Name == "likes" && req.Actor == "ann" && req.Linearizable}, nil
}

func (fakeLocal) Split(_ context.Context, req SplitRequest) (SplitResponse, error) {
	if req.Shard == 9 {
		return SplitResponse{}, errors.New("boom")
	}
	return SplitResponse{Factor: req.Factor + len(req.Name), Code: fsm.ErrSplitShrink}, nil
}

func (fakeLocal) Card(_ context.Context, req CardRequest) (CardResponse, error) {
	if req.Shard == 9 {
		return CardResponse{}, ErrNoShard
	}
	n := 1000 * len(req.Name)
	if req.Linearizable {
		n++
	}
	return CardResponse{Actors: n + int(req.Shard)}, nil
}

func (fakeLocal) Replica(_ context.Context, req ReplicaRequest) (ReplicaResponse, error) {
	if req.ID == "n9" {
		return ReplicaResponse{}, nil
	}
	return ReplicaResponse{Incarnation: "inc-of-" + req.ID}, nil
}

// The placement messages: Config echoes the request into the answer,
// Change and Host fail on shard 9 and otherwise record what they got.
var placementSeen = make(chan any, 8)

func (fakeLocal) Config(_ context.Context, req ConfigRequest) (ConfigResponse, error) {
	if req.Leader {
		return ConfigResponse{}, &shard.NotLeaderError{LeaderID: "n2", LeaderAddr: "127.0.0.1:9"}
	}
	if req.Node != "n4" {
		return ConfigResponse{}, errors.New("wrong node " + req.Node)
	}
	return ConfigResponse{Applied: 77, Config: shard.Configuration{Index: uint64(req.Shard), Commit: 12,
		Servers: []shard.Server{{ID: "n1", Addr: "a:1", Voter: true}, {ID: "n4", Addr: "a:4"}}}}, nil
}

func (fakeLocal) Change(_ context.Context, req ChangeRequest) (ChangeResponse, error) {
	if req.Shard == 9 {
		return ChangeResponse{}, errors.New("configuration moved")
	}
	placementSeen <- req
	return ChangeResponse{}, nil
}

func (fakeLocal) Host(_ context.Context, req HostRequest) (HostResponse, error) {
	if req.Shard == 9 {
		return HostResponse{}, ErrNoShard
	}
	placementSeen <- req
	return HostResponse{}, nil
}

func TestPlacementMessagesRoundTrip(t *testing.T) {
	c, addr := startPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := c.Config(ctx, addr, ConfigRequest{Shard: 5, Node: "n4"})
	want := ConfigResponse{Applied: 77, Config: shard.Configuration{Index: 5, Commit: 12,
		Servers: []shard.Server{{ID: "n1", Addr: "a:1", Voter: true}, {ID: "n4", Addr: "a:4"}}}}
	if err != nil || !reflect.DeepEqual(r, want) {
		t.Fatalf("config: %+v, %v; want %+v", r, err, want)
	}
	if _, err := c.Config(ctx, addr, ConfigRequest{Shard: 5, Leader: true}); err == nil {
		t.Fatal("config from a non-leader: no error")
	} else if nl, ok := shard.IsNotLeader(err); !ok || nl.LeaderID != "n2" {
		t.Fatalf("config from a non-leader: %v", err)
	}
	ch := ChangeRequest{Shard: 3, Kind: ChangePromote, Node: "n4", Addr: "a:4", PrevIndex: 41}
	if err := c.Change(ctx, addr, ch); err != nil {
		t.Fatal(err)
	}
	if got := <-placementSeen; !reflect.DeepEqual(got, ch) {
		t.Fatalf("change arrived as %+v, sent %+v", got, ch)
	}
	if err := c.Change(ctx, addr, ChangeRequest{Shard: 9}); err == nil || !strings.Contains(err.Error(), "configuration moved") {
		t.Fatalf("failed change: %v", err)
	}
	h := HostRequest{Shard: 2, Open: true, Node: "n7"}
	if err := c.Host(ctx, addr, h); err != nil {
		t.Fatal(err)
	}
	if got := <-placementSeen; !reflect.DeepEqual(got, h) {
		t.Fatalf("host arrived as %+v, sent %+v", got, h)
	}
}

func startPair(t *testing.T) (*Client, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go Serve(l, fakeLocal{}, log)
	c := NewClient(func(addr string, timeout time.Duration) (net.Conn, error) {
		return net.DialTimeout("tcp", addr, timeout)
	}, log)
	t.Cleanup(func() { c.Close(); l.Close() })
	return c, l.Addr().String()
}

func TestEveryMessageRoundTrips(t *testing.T) {
	c, addr := startPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	w, err := c.Write(ctx, addr, WriteRequest{Shard: 3, Ops: []fsm.Op{{Kind: fsm.OpAdd, Name: "a", Delta: 2}, {Kind: fsm.OpAdd, Name: "b", Delta: -1}}})
	want := []fsm.Result{
		{Value: 20, Code: fsm.ErrOutOfBounds, Changed: true, ExpiresAt: -5, Split: 3},
		{Value: -10, Code: fsm.ErrOutOfBounds, Changed: true, ExpiresAt: -5, Split: 3},
	}
	if err != nil || !reflect.DeepEqual(w.Results, want) {
		t.Fatalf("write: %+v, %v; want %+v", w.Results, err, want)
	}
	r, err := c.Read(ctx, addr, ReadRequest{Shard: 4, Names: []string{"x", "yyy"}, Linearizable: true})
	if wantL := []shard.Lookup{{Value: -1, ExpiresAt: 0, Split: 4}, {Value: -3, ExpiresAt: 1, Split: 4}}; err != nil || !reflect.DeepEqual(r.Values, wantL) {
		t.Fatalf("read: %+v, %v; want %+v", r.Values, err, wantL)
	}
	ra, err := c.ReadAt(ctx, addr, ReadAtRequest{Shard: 4, Names: []string{"x", "yyy"}, Linearizable: true})
	if wantL := []shard.Lookup{{Value: -1, ExpiresAt: 0, Split: 4}, {Value: -3, ExpiresAt: 1, Split: 4}}; err != nil || ra.Index != 1004 || !reflect.DeepEqual(ra.Values, wantL) {
		t.Fatalf("read at: %+v, %v", ra, err)
	}
	if ch, err := c.Changes(ctx, addr, ChangesRequest{Shard: 2, After: 3, Max: 5}); err != nil || ch.Status != ChangesExpired || ch.Floor != 10 {
		t.Fatalf("changes before the floor: %+v, %v", ch, err)
	}
	ch, err := c.Changes(ctx, addr, ChangesRequest{Shard: 2, After: 20, Max: 5})
	wantB := []shard.ChangeBatch{{Index: 21, Time: -7, Changes: []fsm.Change{{Name: "a", Old: -1, Value: 5}, {Name: "b/2", Old: 3, Value: 0}}}}
	if err != nil || ch.Status != ChangesOK || ch.Page.Through != 25 || !reflect.DeepEqual(ch.Page.Batches, wantB) {
		t.Fatalf("changes: %+v, %v", ch, err)
	}
	dm, err := c.Dump(ctx, addr, DumpRequest{Shard: 3})
	if wantD := []shard.NamedValue{{Name: "a", Value: -2}, {Name: "b/1", Value: 9}}; err != nil || dm.Index != 80 || !reflect.DeepEqual(dm.Counters, wantD) {
		t.Fatalf("dump: %+v, %v", dm, err)
	}
	m, err := c.Member(ctx, addr, MemberRequest{Shard: 1, Name: "likes", Actor: "ann", Linearizable: true})
	if err != nil || !m.Member {
		t.Fatalf("member: %+v, %v", m, err)
	}
	if m, err := c.Member(ctx, addr, MemberRequest{Shard: 1, Name: "likes", Actor: "bob", Linearizable: true}); err != nil || m.Member {
		t.Fatalf("member of another actor: %+v, %v", m, err)
	}
	if n, err := c.Card(ctx, addr, CardRequest{Shard: 5, Name: "likes", Linearizable: true}); err != nil || n.Actors != 5006 {
		t.Fatalf("card: %+v, %v; want 5006", n, err)
	}
	if n, err := c.Card(ctx, addr, CardRequest{Shard: 2, Name: "ab"}); err != nil || n.Actors != 2002 {
		t.Fatalf("stale card: %+v, %v; want 2002", n, err)
	}
	if inc, err := c.Replica(ctx, addr, "n2"); err != nil || inc != "inc-of-n2" {
		t.Fatalf("replica: %q, %v; want inc-of-n2", inc, err)
	}
	if inc, err := c.Replica(ctx, addr, "n9"); err != nil || inc != "" {
		t.Fatalf("replica of an unknown id: %q, %v; want none", inc, err)
	}
	s, err := c.Split(ctx, addr, SplitRequest{Shard: 2, Name: "hot", Factor: 4})
	if err != nil || s.Factor != 7 || s.Code != fsm.ErrSplitShrink {
		t.Fatalf("split: %+v, %v", s, err)
	}
}

func TestErrorsKeepTheirMeaning(t *testing.T) {
	c, addr := startPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := c.Write(ctx, addr, WriteRequest{Shard: 9, Ops: []fsm.Op{{Kind: fsm.OpAdd, Name: "a", Delta: 1}}})
	if nl, ok := shard.IsNotLeader(err); !ok || nl.LeaderID != "n2" || nl.LeaderAddr != "127.0.0.1:9" {
		t.Fatalf("not leader came back as %v", err)
	}
	if _, err := c.Read(ctx, addr, ReadRequest{Shard: 9}); !errors.Is(err, shard.ErrUnavailable) {
		t.Fatalf("no shard came back as %v, want unavailable", err)
	}
	if _, err := c.Card(ctx, addr, CardRequest{Shard: 9, Name: "x"}); !errors.Is(err, shard.ErrUnavailable) {
		t.Fatalf("card without the shard came back as %v, want unavailable", err)
	}
	if _, err := c.Split(ctx, addr, SplitRequest{Shard: 9, Name: "x", Factor: 2}); err == nil || errors.Is(err, shard.ErrUnavailable) || errors.Is(err, shard.ErrOutcomeUnknown) {
		t.Fatalf("a failed request came back as %v", err)
	}
}

func TestUnreachablePeerIsNotSent(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	c := NewClient(func(addr string, timeout time.Duration) (net.Conn, error) {
		return net.DialTimeout("tcp", addr, timeout)
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Write(ctx, addr, WriteRequest{Shard: 1}); !errors.Is(err, ErrNotSent) {
		t.Fatalf("write to a closed port: %v, want ErrNotSent", err)
	}
}

// Adding a message kind leaves the bytes of the existing ones as they
// were: nodes of the previous version keep understanding them.
func TestExistingMessagesKeepTheirBytes(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  interface{ encode(*enc) }
		want string
	}{
		{"read", &ReadRequest{Shard: 1, Names: []string{"a", "bc"}, Linearizable: true}, "01020161026263"},
		{"member", &MemberRequest{Name: "p", Actor: "u"}, "000201700175"},
		{"split", &SplitRequest{Name: "h", Factor: 4}, "016804"},
		{"read response", &ReadResponse{Values: []shard.Lookup{{Value: -1, ExpiresAt: 2, Split: 3}}}, "01010403"},
		{"card", &CardRequest{Name: "s", Linearizable: true}, "010173"},
		{"card response", &CardResponse{Actors: 300}, "ac02"},
	} {
		var e enc
		tc.msg.encode(&e)
		if got := hex.EncodeToString(e.B); got != tc.want {
			t.Errorf("%s encodes as %s, want %s", tc.name, got, tc.want)
		}
	}
	var d dec
	d.B, _ = hex.DecodeString("010173")
	if r := decodeRequest(&d, reqCard, 7); d.Err != nil || !reflect.DeepEqual(r, &CardRequest{Shard: 7, Name: "s", Linearizable: true}) {
		t.Fatalf("card request decodes as %+v, %v", r, d.Err)
	}
}

package transport

//lint:file-ignore SA1019 raft still sets and falls back on Leader and Candidate, so they travel too

import (
	"bytes"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// pair is two nodes' RaftNets: a sends, b's shard transports answer.
type pair struct {
	ma, mb *Mux
	a, b   *RaftNet
}

func newPair(t *testing.T, faults bool, cfg RaftNetConfig) *pair {
	t.Helper()
	p := &pair{ma: newMux(t, faults), mb: newMux(t, faults)}
	p.a, p.b = NewRaftNet(p.ma, cfg), NewRaftNet(p.mb, cfg)
	t.Cleanup(func() { p.a.Close(); p.b.Close() })
	return p
}

func (p *pair) target() raft.ServerAddress { return raft.ServerAddress(p.mb.Addr()) }

// follow answers every RPC on st with answer, until st closes.
func follow(t *testing.T, st *ShardTransport, answer func(raft.RPC)) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case rpc := <-st.Consumer():
				answer(rpc)
			case <-st.closed:
				return
			}
		}
	}()
	t.Cleanup(func() { st.Close(); <-done })
}

// ackAppends answers appends with success and LastLog at the request's end.
func ackAppends(rpc raft.RPC) {
	switch req := rpc.Command.(type) {
	case *raft.AppendEntriesRequest:
		rpc.Respond(&raft.AppendEntriesResponse{Term: req.Term, LastLog: req.PrevLogEntry + uint64(len(req.Entries)), Success: true}, nil)
	case *raft.RequestVoteRequest:
		rpc.Respond(&raft.RequestVoteResponse{Term: req.Term, Granted: true}, nil)
	default:
		rpc.Respond(nil, errors.New("unexpected"))
	}
}

func appendReq(prev uint64, n int) *raft.AppendEntriesRequest {
	req := &raft.AppendEntriesRequest{RPCHeader: hdr("a"), Term: 3, Leader: []byte("a"), PrevLogEntry: prev, PrevLogTerm: 3, LeaderCommitIndex: prev}
	for i := range n {
		req.Entries = append(req.Entries, &raft.Log{Index: prev + uint64(i) + 1, Term: 3, Type: raft.LogCommand, Data: []byte("op")})
	}
	return req
}

func TestRaftNetRPCs(t *testing.T) {
	p := newPair(t, false, RaftNetConfig{})
	follow(t, p.b.Shard(5), func(rpc raft.RPC) {
		switch req := rpc.Command.(type) {
		case *raft.TimeoutNowRequest:
			rpc.Respond(&raft.TimeoutNowResponse{RPCHeader: hdr("b")}, nil)
		case *raft.RequestPreVoteRequest:
			rpc.Respond(&raft.RequestPreVoteResponse{Term: req.Term, Granted: true}, errors.New("vote error text"))
		default:
			ackAppends(rpc)
		}
	})
	sa := p.a.Shard(5)
	var ae raft.AppendEntriesResponse
	if err := sa.AppendEntries("b", p.target(), appendReq(10, 3), &ae); err != nil || !ae.Success || ae.LastLog != 13 {
		t.Fatalf("AppendEntries: %+v, %v", ae, err)
	}
	var tn raft.TimeoutNowResponse
	if err := sa.TimeoutNow("b", p.target(), &raft.TimeoutNowRequest{RPCHeader: hdr("a")}, &tn); err != nil || string(tn.ID) != "b" {
		t.Fatalf("TimeoutNow: %+v, %v", tn, err)
	}
	var pv raft.RequestPreVoteResponse
	err := sa.RequestPreVote("b", p.target(), &raft.RequestPreVoteRequest{Term: 4}, &pv)
	if err == nil || err.Error() != "vote error text" || !pv.Granted {
		t.Fatalf("RequestPreVote: want the follower's error and response, got %+v, %v", pv, err)
	}
	// A shard the peer does not host answers with an error, not silence.
	var vr raft.RequestVoteResponse
	if err := p.a.Shard(6).RequestVote("b", p.target(), &raft.RequestVoteRequest{Term: 1}, &vr); err == nil {
		t.Fatal("RequestVote to a shard the peer does not run succeeded")
	}
}

// TestRaftNetHeartbeatFastPath: with a handler set, heartbeats are
// answered even while the shard's raft is busy with an append.
func TestRaftNetHeartbeatFastPath(t *testing.T) {
	p := newPair(t, false, RaftNetConfig{})
	sb := p.b.Shard(1)
	release := make(chan struct{})
	follow(t, sb, func(rpc raft.RPC) { <-release; ackAppends(rpc) })
	defer close(release)
	sb.SetHeartbeatHandler(func(rpc raft.RPC) {
		rpc.Respond(&raft.AppendEntriesResponse{Term: 99, Success: true}, nil)
	})
	sa := p.a.Shard(1)
	appendDone := make(chan error, 1)
	go func() {
		var r raft.AppendEntriesResponse
		appendDone <- sa.AppendEntries("b", p.target(), appendReq(1, 1), &r)
	}()
	hb := &raft.AppendEntriesRequest{RPCHeader: hdr("a"), Term: 5, Leader: []byte("a")}
	var r raft.AppendEntriesResponse
	if err := sa.AppendEntries("b", p.target(), hb, &r); err != nil || r.Term != 99 {
		t.Fatalf("heartbeat: %+v, %v", r, err)
	}
	select {
	case err := <-appendDone:
		t.Fatalf("append answered while its raft was held: %v", err)
	default:
	}
}

// TestRaftNetConnectionLoss: cutting the connection fails the RPC waiting
// on it at once (long before Timeout), and the next RPC dials again.
func TestRaftNetConnectionLoss(t *testing.T) {
	p := newPair(t, true, RaftNetConfig{Timeout: time.Minute})
	hold := make(chan struct{})
	var mu sync.Mutex
	holding := true
	follow(t, p.b.Shard(1), func(rpc raft.RPC) {
		mu.Lock()
		h := holding
		mu.Unlock()
		if h {
			<-hold // never answered: the connection goes first
			rpc.Respond(nil, errors.New("late"))
			return
		}
		ackAppends(rpc)
	})
	sa := p.a.Shard(1)
	errc := make(chan error, 1)
	go func() {
		var r raft.AppendEntriesResponse
		errc <- sa.AppendEntries("b", p.target(), appendReq(1, 1), &r)
	}()
	waitFor(t, waitTimeout, "the append to be in flight", func() bool { return trackedConns(p.mb) == 1 })
	p.mb.Faults().Block(p.ma.Addr())
	select {
	case err := <-errc:
		if !errors.Is(err, errConnLost) {
			t.Fatalf("in-flight append failed with %v, want errConnLost", err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("in-flight append did not fail when its connection was cut")
	}
	close(hold)
	mu.Lock()
	holding = false
	mu.Unlock()
	p.mb.Faults().Heal()
	var r raft.AppendEntriesResponse
	if err := sa.AppendEntries("b", p.target(), appendReq(1, 1), &r); err != nil || !r.Success {
		t.Fatalf("append after reconnecting: %+v, %v", r, err)
	}
}

// TestRaftNetTimeout: an RPC whose follower never answers fails after
// Timeout; a silent connection is dropped so the next RPC redials.
func TestRaftNetTimeout(t *testing.T) {
	p := newPair(t, false, RaftNetConfig{Timeout: 300 * time.Millisecond})
	hold := make(chan struct{})
	defer close(hold)
	follow(t, p.b.Shard(1), func(rpc raft.RPC) { <-hold })
	var r raft.AppendEntriesResponse
	if err := p.a.Shard(1).AppendEntries("b", p.target(), appendReq(1, 1), &r); !errors.Is(err, errTimeout) {
		t.Fatalf("unanswered append: %v, want errTimeout", err)
	}
	pr, _ := p.a.peer(p.mb.Addr())
	pr.mu.Lock()
	cc := pr.cur
	pr.mu.Unlock()
	waitFor(t, waitTimeout, "the silent connection to be dropped", cc.dead)
}

// TestRaftNetPipelineSendsWithoutConsumer: a pipeline whose Consumer
// nobody reads (raft's decoder returned after a rejected append) must
// still take sends while the follower answers, so raft's send loop can
// notice and close the pipeline instead of blocking forever.
func TestRaftNetPipelineSendsWithoutConsumer(t *testing.T) {
	const inflight = 2
	p := newPair(t, false, RaftNetConfig{MaxInflight: inflight})
	follow(t, p.b.Shard(2), ackAppends)
	pl, err := p.a.Shard(2).AppendEntriesPipeline("b", p.target())
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	sent := make(chan error, 1)
	go func() {
		for i := range 5 * inflight {
			if _, err := pl.AppendEntries(appendReq(uint64(i), 1), &raft.AppendEntriesResponse{}); err != nil {
				sent <- err
				return
			}
		}
		sent <- nil
	}()
	select {
	case err := <-sent:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("sends blocked on a pipeline whose consumer stopped reading")
	}
}

func TestRaftNetPipelineOrder(t *testing.T) {
	p := newPair(t, false, RaftNetConfig{MaxInflight: 4})
	follow(t, p.b.Shard(2), ackAppends)
	pl, err := p.a.Shard(2).AppendEntriesPipeline("b", p.target())
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	const n = 200
	sent := make(chan *raft.AppendEntriesRequest, n)
	go func() {
		for i := range n {
			req := appendReq(uint64(i), 1)
			if _, err := pl.AppendEntries(req, &raft.AppendEntriesResponse{}); err != nil {
				t.Errorf("send %d: %v", i, err)
				close(sent)
				return
			}
			sent <- req
		}
		close(sent)
	}()
	for i := range n {
		var f raft.AppendFuture
		select {
		case f = <-pl.Consumer():
		case <-time.After(waitTimeout):
			t.Fatalf("future %d never arrived", i)
		}
		if err := f.Error(); err != nil {
			t.Fatalf("future %d: %v", i, err)
		}
		if want := <-sent; f.Request() != want || f.Response().LastLog != uint64(i)+1 {
			t.Fatalf("future %d out of order: prev %d, last %d", i, f.Request().PrevLogEntry, f.Response().LastLog)
		}
	}
}

// TestRaftNetPipelineClose: Close cancels unanswered requests, and a send
// blocked on a full pipeline returns instead of hanging.
func TestRaftNetPipelineClose(t *testing.T) {
	p := newPair(t, false, RaftNetConfig{MaxInflight: 2})
	hold := make(chan struct{})
	defer close(hold)
	follow(t, p.b.Shard(2), func(rpc raft.RPC) { <-hold })
	pl, err := p.a.Shard(2).AppendEntriesPipeline("b", p.target())
	if err != nil {
		t.Fatal(err)
	}
	var futs []raft.AppendFuture
	for i := range 2 {
		f, err := pl.AppendEntries(appendReq(uint64(i), 1), &raft.AppendEntriesResponse{})
		if err != nil {
			t.Fatal(err)
		}
		futs = append(futs, f)
	}
	blocked := make(chan error, 1)
	go func() {
		_, err := pl.AppendEntries(appendReq(9, 1), &raft.AppendEntriesResponse{})
		blocked <- err
	}()
	select {
	case err := <-blocked:
		t.Fatalf("third send on a pipeline of 2 did not wait: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	pl.Close()
	if err := <-blocked; !errors.Is(err, raft.ErrPipelineShutdown) {
		t.Fatalf("blocked send after Close: %v", err)
	}
	for i, f := range futs {
		if err := f.Error(); !errors.Is(err, raft.ErrPipelineShutdown) {
			t.Fatalf("future %d after Close: %v", i, err)
		}
	}
	if _, err := pl.AppendEntries(appendReq(1, 1), &raft.AppendEntriesResponse{}); !errors.Is(err, raft.ErrPipelineShutdown) {
		t.Fatalf("send after Close: %v", err)
	}
}

func TestRaftNetNoPipelineWithInflightOne(t *testing.T) {
	p := newPair(t, false, RaftNetConfig{MaxInflight: 1})
	if _, err := p.a.Shard(1).AppendEntriesPipeline("b", p.target()); !errors.Is(err, raft.ErrPipelineReplicationNotSupported) {
		t.Fatalf("pipeline with MaxInflight 1: %v", err)
	}
}

// TestRaftNetSnapshotDoesNotBlockOtherShards holds a snapshot stream
// half-read and checks that another shard's appends still go through; then
// the snapshot completes with its bytes intact.
func TestRaftNetSnapshotDoesNotBlockOtherShards(t *testing.T) {
	p := newPair(t, false, RaftNetConfig{})
	data := bytes.Repeat([]byte("snapshot"), 100_000)
	got := make(chan []byte, 1)
	resume := make(chan struct{})
	follow(t, p.b.Shard(1), func(rpc raft.RPC) {
		req := rpc.Command.(*raft.InstallSnapshotRequest)
		head := make([]byte, 1000)
		_, err := io.ReadFull(rpc.Reader, head)
		if err == nil {
			<-resume
			var rest []byte
			rest, err = io.ReadAll(rpc.Reader)
			got <- append(head, rest...)
		}
		rpc.Respond(&raft.InstallSnapshotResponse{Term: req.Term, Success: err == nil}, err)
	})
	follow(t, p.b.Shard(2), ackAppends)

	snapErr := make(chan error, 1)
	var sr raft.InstallSnapshotResponse
	go func() {
		req := &raft.InstallSnapshotRequest{RPCHeader: hdr("a"), Term: 4, Leader: []byte("a"), LastLogIndex: 10, Size: int64(len(data))}
		snapErr <- p.a.Shard(1).InstallSnapshot("b", p.target(), req, &sr, bytes.NewReader(data))
	}()
	for i := range 10 {
		var r raft.AppendEntriesResponse
		if err := p.a.Shard(2).AppendEntries("b", p.target(), appendReq(uint64(i), 1), &r); err != nil || !r.Success {
			t.Fatalf("append %d during a snapshot install: %+v, %v", i, r, err)
		}
	}
	close(resume)
	if err := <-snapErr; err != nil || !sr.Success || sr.Term != 4 {
		t.Fatalf("InstallSnapshot: %+v, %v", sr, err)
	}
	if b := <-got; !bytes.Equal(b, data) {
		t.Fatalf("snapshot arrived with %d bytes, want %d identical", len(b), len(data))
	}
}

// TestRaftNetCloseLeaksNothing: after traffic, closing both RaftNets and
// Muxes ends every goroutine they started.
func TestRaftNetCloseLeaksNothing(t *testing.T) {
	before := runtime.NumGoroutine()
	ma, _ := listen("127.0.0.1:0", "", false, testLogger(), defaultHeaderTimeout)
	mb, _ := listen("127.0.0.1:0", "", false, testLogger(), defaultHeaderTimeout)
	a, b := NewRaftNet(ma, RaftNetConfig{MaxInflight: 4}), NewRaftNet(mb, RaftNetConfig{})
	sb := b.Shard(1)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case rpc := <-sb.Consumer():
				ackAppends(rpc)
			case <-stop:
				return
			}
		}
	}()
	sa := a.Shard(1)
	var r raft.AppendEntriesResponse
	if err := sa.AppendEntries("b", raft.ServerAddress(mb.Addr()), appendReq(1, 1), &r); err != nil {
		t.Fatal(err)
	}
	pl, err := sa.AppendEntriesPipeline("b", raft.ServerAddress(mb.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pl.AppendEntries(appendReq(2, 1), &raft.AppendEntriesResponse{}); err != nil {
		t.Fatal(err)
	}
	// Closing the transport closes the pipeline raft forgot to close.
	a.Close()
	close(stop)
	b.Close()
	ma.Close()
	mb.Close()
	waitFor(t, waitTimeout, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
	if _, err := pl.AppendEntries(appendReq(3, 1), &raft.AppendEntriesResponse{}); err == nil {
		t.Fatal("send on a pipeline of a closed RaftNet succeeded")
	}
	if err := sa.AppendEntries("b", raft.ServerAddress(mb.Addr()), appendReq(1, 1), &r); !errors.Is(err, raft.ErrTransportShutdown) {
		t.Fatalf("RPC on a closed RaftNet: %v", err)
	}
}

// gateConn is a net.Conn whose Writes are recorded and held until the
// test releases them.
type gateConn struct {
	net.Conn
	mu     sync.Mutex
	writes [][]byte
	gate   chan struct{}
}

func (c *gateConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, bytes.Clone(b))
	c.mu.Unlock()
	<-c.gate
	return len(b), nil
}

func (c *gateConn) SetWriteDeadline(time.Time) error { return nil }

func (c *gateConn) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.writes)
}

// TestCoalescerBatchesWhileWriting: frames queued while a write is in
// flight leave together in the next single write, in order.
func TestCoalescerBatchesWhileWriting(t *testing.T) {
	gc := &gateConn{gate: make(chan struct{})}
	w := newCoalescer(gc, 0, func(error) {})
	done := make(chan struct{})
	go func() { defer close(done); w.run() }()
	send := func(s string) error {
		return w.frame(1<<20, time.Now().Add(time.Minute), false, func(b []byte) ([]byte, error) { return append(b, s...), nil })
	}
	first := make(chan error, 1)
	go func() { first <- send("first") }() // an idle connection: the sender writes itself
	waitFor(t, waitTimeout, "the first write to start", func() bool { return gc.count() == 1 })
	for _, s := range []string{"a", "b", "c"} {
		if err := send(s); err != nil { // queued behind the write in flight, not blocked
			t.Fatal(err)
		}
	}
	gc.gate <- struct{}{} // the first write returns; its sender hands the rest on
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	waitFor(t, waitTimeout, "the second write", func() bool { return gc.count() == 2 })
	gc.gate <- struct{}{}
	w.close(net.ErrClosed)
	<-done
	want := []byte{0, 0, 0, 1, 'a', 0, 0, 0, 1, 'b', 0, 0, 0, 1, 'c'}
	if !bytes.Equal(gc.writes[1], want) {
		t.Fatalf("second write %q, want the three queued frames %q", gc.writes[1], want)
	}
	if n := gc.count(); n != 2 {
		t.Fatalf("%d writes, want 2", n)
	}
}

// TestCoalescerLazyFramesShareOneWrite: heartbeats (lazy frames) sent at
// about the same moment by several groups leave in one write, and a lazy
// frame nobody else writes still leaves, after the linger. A normal frame
// takes the lazy ones waiting before it along at once.
func TestCoalescerLazyFramesShareOneWrite(t *testing.T) {
	gc := &gateConn{gate: make(chan struct{}, 16)}
	for range 16 {
		gc.gate <- struct{}{}
	}
	w := newCoalescer(gc, 0, func(error) {})
	done := make(chan struct{})
	go func() { defer close(done); w.run() }()
	defer func() { w.close(net.ErrClosed); <-done }()
	send := func(s string, lazy bool) {
		t.Helper()
		if err := w.frame(1<<20, time.Now().Add(time.Minute), lazy, func(b []byte) ([]byte, error) { return append(b, s...), nil }); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range []string{"a", "b", "c"} {
		send(s, true)
	}
	waitFor(t, waitTimeout, "the lingering heartbeats' write", func() bool { return gc.count() == 1 })
	want := []byte{0, 0, 0, 1, 'a', 0, 0, 0, 1, 'b', 0, 0, 0, 1, 'c'}
	gc.mu.Lock()
	got := gc.writes[0]
	gc.mu.Unlock()
	if !bytes.Equal(got, want) {
		t.Fatalf("first write %q, want the three heartbeats %q", got, want)
	}

	send("d", true)
	send("e", false) // written at once, with d
	gc.mu.Lock()
	n := len(gc.writes)
	var second []byte
	if n > 1 {
		second = gc.writes[1]
	}
	gc.mu.Unlock()
	if want := []byte{0, 0, 0, 1, 'd', 0, 0, 0, 1, 'e'}; n != 2 || !bytes.Equal(second, want) {
		t.Fatalf("after a heartbeat and an append: %d writes, second %q; want 2, the second %q", n, second, want)
	}
}

// TestRaftNetIdlePipelineReportsConnectionLoss: a pipeline with nothing in
// flight whose connection fails hands raft a failed future, so raft ends
// it and replicates over a new connection. Raft sends an idle group's
// followers nothing on the pipeline, so without this it would never learn
// the pipeline is dead, and a restarted follower would not hear the
// commit index until the group's next write.
func TestRaftNetIdlePipelineReportsConnectionLoss(t *testing.T) {
	p := newPair(t, true, RaftNetConfig{MaxInflight: 2, Timeout: time.Minute})
	follow(t, p.b.Shard(2), ackAppends)
	pl, err := p.a.Shard(2).AppendEntriesPipeline("b", p.target())
	if err != nil {
		t.Fatal(err)
	}
	defer pl.Close()
	f, err := pl.AppendEntries(appendReq(1, 1), &raft.AppendEntriesResponse{})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-pl.Consumer():
		if got != f || got.Error() != nil || !got.Response().Success {
			t.Fatalf("first append: %v %+v", got.Error(), got.Response())
		}
	case <-time.After(waitTimeout):
		t.Fatal("no answer to the first append")
	}
	p.mb.Faults().Block(p.ma.Addr()) // cuts the connection; nothing is in flight
	select {
	case got := <-pl.Consumer():
		if got.Error() == nil || got.Response().Success {
			t.Fatalf("after the connection was cut: %v %+v, want a failed future", got.Error(), got.Response())
		}
	case <-time.After(waitTimeout):
		t.Fatal("an idle pipeline whose connection was cut delivered nothing")
	}
}

package forward

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"tally/shard"
)

// Local serves requests forwarded to this node, on its own replicas. It
// must not forward them again: a node that is not the leader answers
// *shard.NotLeaderError with its hint, and the sender retries. A node
// without a replica of the shard answers ErrNoShard.
type Local interface {
	Write(ctx context.Context, req WriteRequest) (WriteResponse, error)
	Read(ctx context.Context, req ReadRequest) (ReadResponse, error)
	ReadAt(ctx context.Context, req ReadAtRequest) (ReadAtResponse, error)
	Member(ctx context.Context, req MemberRequest) (MemberResponse, error)
	Split(ctx context.Context, req SplitRequest) (SplitResponse, error)
	Card(ctx context.Context, req CardRequest) (CardResponse, error)
	Replica(ctx context.Context, req ReplicaRequest) (ReplicaResponse, error)
	Config(ctx context.Context, req ConfigRequest) (ConfigResponse, error)
	Change(ctx context.Context, req ChangeRequest) (ChangeResponse, error)
	Host(ctx context.Context, req HostRequest) (HostResponse, error)
	Changes(ctx context.Context, req ChangesRequest) (ChangesResponse, error)
	Dump(ctx context.Context, req DumpRequest) (DumpResponse, error)
}

// Serve answers forwarded requests on every connection l accepts, until l
// is closed.
func Serve(l net.Listener, h Local, log *slog.Logger) {
	for {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		go serveConn(conn, h, log)
	}
}

// answer is one response waiting to be written, under its request's id.
type answer struct {
	id   uint64
	resp response
	err  error
}

func serveConn(conn net.Conn, h Local, log *slog.Logger) {
	defer conn.Close()
	out := make(chan answer, 4096)
	quit := make(chan struct{})
	var wg sync.WaitGroup
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		writeAnswers(conn, out, quit)
	}()
	r := bufio.NewReaderSize(conn, 64<<10)
	var buf []byte
	for {
		var err error
		buf, err = readFrame(r, buf)
		if err != nil {
			break
		}
		reqs, err := decodeRequests(buf)
		if err != nil {
			log.Debug("forward: malformed request frame", "err", err)
			break
		}
		for _, in := range reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ctx, cancel := context.WithTimeout(context.Background(), in.budget)
				defer cancel()
				resp, err := dispatch(ctx, h, in.req)
				select {
				case out <- answer{id: in.id, resp: resp, err: err}:
				case <-quit:
				}
			}()
		}
	}
	close(quit)
	conn.Close()
	wg.Wait()
	<-writerDone
}

// incoming is one decoded request of a frame.
type incoming struct {
	id     uint64
	budget time.Duration
	req    request
}

// decodeRequests reads a request frame's payload; a frame with anything
// malformed in it is refused whole.
func decodeRequests(buf []byte) ([]incoming, error) {
	d := dec{B: buf}
	if d.U8() != frameRequests {
		return nil, errBadFrame
	}
	n := d.Count()
	out := make([]incoming, 0, min(n, 1024))
	for i := 0; i < n && d.Err == nil; i++ {
		id := d.Uv()
		kind := d.U8()
		sh := uint32(d.Uv())
		// The sender's remaining patience: work it will no longer wait
		// for (and already reported as unknown) is not started late.
		// (Compared in milliseconds: a huge count must not overflow into
		// a negative duration.)
		budget := maxBudget
		if ms := d.Uv(); ms < uint64(maxBudget/time.Millisecond) {
			budget = time.Duration(ms) * time.Millisecond
		}
		req := decodeRequest(&d, kind, sh)
		if d.Err == nil {
			out = append(out, incoming{id: id, budget: budget, req: req})
		}
	}
	if d.Err != nil {
		return nil, errBadFrame
	}
	return out, nil
}

// dispatch hands req to the Local method of its type.
func dispatch(ctx context.Context, h Local, req request) (response, error) {
	switch req := req.(type) {
	case *WriteRequest:
		resp, err := h.Write(ctx, *req)
		return &resp, err
	case *ReadRequest:
		resp, err := h.Read(ctx, *req)
		return &resp, err
	case *MemberRequest:
		resp, err := h.Member(ctx, *req)
		return &resp, err
	case *SplitRequest:
		resp, err := h.Split(ctx, *req)
		return &resp, err
	case *CardRequest:
		resp, err := h.Card(ctx, *req)
		return &resp, err
	case *ReplicaRequest:
		resp, err := h.Replica(ctx, *req)
		return &resp, err
	case *ReadAtRequest:
		resp, err := h.ReadAt(ctx, *req)
		return &resp, err
	case *ConfigRequest:
		resp, err := h.Config(ctx, *req)
		return &resp, err
	case *ChangeRequest:
		resp, err := h.Change(ctx, *req)
		return &resp, err
	case *HostRequest:
		resp, err := h.Host(ctx, *req)
		return &resp, err
	case *ChangesRequest:
		resp, err := h.Changes(ctx, *req)
		return &resp, err
	case *DumpRequest:
		resp, err := h.Dump(ctx, *req)
		return &resp, err
	}
	return nil, errors.New("forward: unknown request type")
}

func writeAnswers(conn net.Conn, out <-chan answer, quit <-chan struct{}) {
	w := bufio.NewWriterSize(conn, 64<<10)
	var e enc
	var batch []answer
	for {
		batch = batch[:0]
		select {
		case a := <-out:
			batch = append(batch, a)
		case <-quit:
			return
		}
	drain:
		for len(batch) < 1024 {
			select {
			case a := <-out:
				batch = append(batch, a)
			default:
				break drain
			}
		}
		startFrame(&e, frameResponses, len(batch))
		for _, a := range batch {
			e.Uv(a.id)
			encodeAnswer(&e, a)
		}
		if _, err := w.Write(finishFrame(&e)); err != nil {
			conn.Close() // unblocks the reader, which then ends the connection
			return
		}
		if err := w.Flush(); err != nil {
			conn.Close()
			return
		}
	}
}

func encodeAnswer(e *enc, a answer) {
	if a.err != nil {
		if nl, ok := shard.IsNotLeader(a.err); ok {
			e.U8(statusNotLeader)
			e.Str(nl.LeaderID)
			e.Str(nl.LeaderAddr)
			return
		}
		switch {
		case errors.Is(a.err, shard.ErrOutcomeUnknown):
			e.U8(statusUnknown)
		case errors.Is(a.err, shard.ErrKeysFull):
			e.U8(statusKeysFull)
		case errors.Is(a.err, shard.ErrUnavailable), errors.Is(a.err, shard.ErrClosed), errors.Is(a.err, ErrNoShard):
			e.U8(statusUnavailable)
		default:
			e.U8(statusError)
		}
		e.Str(a.err.Error())
		return
	}
	e.U8(statusOK)
	a.resp.encode(e)
}

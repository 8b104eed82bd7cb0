package transport

import (
	"bufio"
	"errors"
	"io"
	"net"
	"time"

	"github.com/hashicorp/raft"
)

// serverConn is one connection a peer dialed to this node: its requests,
// for any shard, are read here and handed to that shard's transport; the
// responses go back through the connection's coalescer.
type serverConn struct {
	net  *RaftNet
	c    *conn
	w    *coalescer
	hbCh chan raft.RPCResponse // heartbeats answered inline, one at a time
}

func (t *RaftNet) serve(c *conn) {
	sc := &serverConn{net: t, c: c, hbCh: make(chan raft.RPCResponse, 1)}
	sc.w = newCoalescer(c, t.cfg.Timeout, func(err error) { c.Close() })
	if !t.trackServer(sc) {
		c.Close()
		return
	}
	defer t.untrackServer(sc)
	t.wg.Go(sc.w.run)
	err := sc.readLoop()
	sc.close(err)
}

func (sc *serverConn) close(err error) {
	sc.w.close(err)
	sc.c.Close()
}

func (sc *serverConn) readLoop() error {
	br := bufio.NewReaderSize(sc.c, 256<<10)
	for {
		body, err := readFrame(br, sc.net.cfg.MaxFrame)
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				sc.net.logger.Debug("raft connection ended", "peer", sc.c.RemoteAddr().String(), "err", err)
			}
			return err
		}
		q, err := decodeRequest(body)
		if err == nil && q.typ == msgSnapshotReq {
			err = errors.New("transport: snapshot request on a request connection")
		}
		if err != nil {
			sc.net.logger.Warn("dropping raft connection: bad request", "peer", sc.c.RemoteAddr().String(), "err", err)
			return err
		}
		st := sc.net.shard(q.shard)
		if st == nil {
			sc.respond(q.typ, q.id, nil, shardErr(q.shard, errNoShard), false)
			continue
		}
		if q.typ == msgHeartbeatReq {
			if fn := st.heartbeatHandler(); fn != nil {
				// raft's handler answers before it returns and touches no
				// disk unless the term changes, so it runs on the reader,
				// ahead of any appends this shard has queued.
				fn(raft.RPC{Command: q.cmd, RespChan: sc.hbCh})
				// While more frames wait in the read buffer (the other
				// groups' heartbeats, sent in the same write), the answer
				// waits for theirs.
				more := br.Buffered() > 0
				select {
				case r := <-sc.hbCh:
					sc.respond(q.typ, q.id, r.Response, r.Error, more)
				default:
					sc.respond(q.typ, q.id, nil, raft.ErrTransportShutdown, more)
				}
				continue
			}
		}
		st.enqueue(inbound{typ: q.typ, id: q.id, cmd: q.cmd, sc: sc})
	}
}

// respond queues a response; a failed connection drops it (its client
// has failed the call already). A lazy one waits briefly for company.
func (sc *serverConn) respond(typ byte, id uint64, resp any, rpcErr error, lazy bool) {
	deadline := time.Now().Add(sc.net.cfg.Timeout)
	err := sc.w.frame(sc.net.cfg.MaxFrame, deadline, lazy, func(b []byte) ([]byte, error) {
		return appendResponse(b, typ, id, resp, rpcErr)
	})
	if err != nil && !errors.Is(err, errConnLost) {
		sc.net.logger.Debug("raft response dropped", "peer", sc.c.RemoteAddr().String(), "err", err)
	}
}

// inbound is one request waiting for its shard's raft.
type inbound struct {
	typ    byte
	id     uint64
	cmd    any
	reader io.Reader             // InstallSnapshot only
	sc     *serverConn           // where the response goes, or
	snap   chan raft.RPCResponse // for InstallSnapshot (cap 1)
}

func (in *inbound) reply(resp any, err error) {
	if in.snap != nil {
		in.snap <- raft.RPCResponse{Response: resp, Error: err}
		return
	}
	in.sc.respond(in.typ, in.id, resp, err, false)
}

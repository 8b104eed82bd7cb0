package transport

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"
)

// snapshotBuffer is the buffering on both ends of a snapshot stream.
const snapshotBuffer = 256 << 10

// maxSnapshotHeader bounds the request and response frames of a snapshot
// connection (the request carries the cluster configuration).
const maxSnapshotHeader = 16 << 20

// installSnapshot streams one snapshot to target on a connection of its
// own: one request frame, the snapshot's bytes, one response frame, close.
func (t *RaftNet) installSnapshot(shard uint32, target string, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	c, err := t.mux.dial(target, key{KindSnapshot, 0}, t.cfg.Timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(t.snapshotTimeout(args.Size)))

	b, off := beginFrame(nil)
	b, err = appendRequest(b, 1, shard, args)
	if err == nil {
		b, err = endFrame(b, off, maxSnapshotHeader)
	}
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(c, snapshotBuffer)
	if _, err := bw.Write(b); err != nil {
		return err
	}
	if _, err := io.Copy(bw, data); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	body, err := readFrame(bufio.NewReader(c), maxSnapshotHeader)
	if err != nil {
		return fmt.Errorf("transport: snapshot response: %w", err)
	}
	h, d, err := decodeResponseHead(body)
	if err != nil {
		return err
	}
	if h.id != 1 {
		return fmt.Errorf("%w: snapshot response id %d", errMalformed, h.id)
	}
	if err := decodeResponseBody(&d, h.typ, resp); err != nil {
		return err
	}
	if h.errMsg != "" {
		return fmt.Errorf("%s", h.errMsg)
	}
	return nil
}

// serveSnapshot receives one snapshot install and hands it to the shard's
// raft, which reads the stream itself.
func (t *RaftNet) serveSnapshot(c *conn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(t.cfg.Timeout))
	br := bufio.NewReaderSize(c, snapshotBuffer)
	body, err := readFrame(br, maxSnapshotHeader)
	if err != nil {
		t.logger.Debug("dropping snapshot connection", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	q, err := decodeRequest(body)
	if err == nil && q.typ != msgSnapshotReq {
		err = errors.New("transport: not a snapshot request")
	}
	if err != nil {
		t.logger.Warn("dropping snapshot connection: bad request", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	req := q.cmd.(*raft.InstallSnapshotRequest)
	c.SetDeadline(time.Now().Add(t.snapshotTimeout(req.Size)))

	in := inbound{typ: q.typ, id: q.id, cmd: req, reader: io.LimitReader(br, req.Size), snap: make(chan raft.RPCResponse, 1)}
	var r raft.RPCResponse
	if st := t.shard(q.shard); st == nil {
		r.Error = shardErr(q.shard, errNoShard)
	} else {
		st.enqueue(in)
		select {
		case r = <-in.snap:
		case <-t.done:
			return
		}
	}
	b, off := beginFrame(nil)
	b, err = appendResponse(b, q.typ, q.id, r.Response, r.Error)
	if err == nil {
		b, err = endFrame(b, off, maxSnapshotHeader)
	}
	if err == nil {
		_, err = c.Write(b)
	}
	if err != nil {
		t.logger.Debug("snapshot response not sent", "remote", c.RemoteAddr().String(), "err", err)
	}
}

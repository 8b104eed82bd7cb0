package transport

import (
	"io"
	"sync"

	"github.com/hashicorp/raft"
)

// ShardTransport is one shard's raft.Transport on a RaftNet. Requests to
// other nodes share the RaftNet's connections; requests from them reach
// Consumer in the order they arrived, one at a time, as NetworkTransport
// delivers one connection's requests. It implements raft.WithClose and
// raft.WithPreVote.
type ShardTransport struct {
	net       *RaftNet
	id        uint32
	consumeCh chan raft.RPC

	hbMu sync.Mutex
	hbFn func(raft.RPC)

	mu      sync.Mutex
	queue   []inbound
	closing bool
	pipes   map[*pipeline]struct{}

	kick    chan struct{} // cap 1: queue is not empty
	closed  chan struct{}
	stopped chan struct{} // closed when dispatch returns
	once    sync.Once
}

var (
	_ raft.Transport   = (*ShardTransport)(nil)
	_ raft.WithClose   = (*ShardTransport)(nil)
	_ raft.WithPreVote = (*ShardTransport)(nil)
)

func newShardTransport(t *RaftNet, id uint32) *ShardTransport {
	return &ShardTransport{
		net:       t,
		id:        id,
		consumeCh: make(chan raft.RPC),
		pipes:     make(map[*pipeline]struct{}),
		kick:      make(chan struct{}, 1),
		closed:    make(chan struct{}),
		stopped:   make(chan struct{}),
	}
}

// Consumer implements raft.Transport.
func (st *ShardTransport) Consumer() <-chan raft.RPC { return st.consumeCh }

// LocalAddr implements raft.Transport: the node's advertised address, the
// same for every shard.
func (st *ShardTransport) LocalAddr() raft.ServerAddress {
	return raft.ServerAddress(st.net.mux.Addr())
}

// EncodePeer implements raft.Transport.
func (st *ShardTransport) EncodePeer(_ raft.ServerID, addr raft.ServerAddress) []byte {
	return []byte(addr)
}

// DecodePeer implements raft.Transport.
func (st *ShardTransport) DecodePeer(b []byte) raft.ServerAddress { return raft.ServerAddress(b) }

// SetHeartbeatHandler implements raft.Transport: with a handler set,
// heartbeats are answered by it on the connection's reader, never queued
// behind this shard's appends.
func (st *ShardTransport) SetHeartbeatHandler(fn func(raft.RPC)) {
	st.hbMu.Lock()
	st.hbFn = fn
	st.hbMu.Unlock()
}

func (st *ShardTransport) heartbeatHandler() func(raft.RPC) {
	st.hbMu.Lock()
	defer st.hbMu.Unlock()
	return st.hbFn
}

func (st *ShardTransport) isClosed() bool {
	select {
	case <-st.closed:
		return true
	default:
		return false
	}
}

// AppendEntries implements raft.Transport.
func (st *ShardTransport) AppendEntries(_ raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	return st.call(target, args, resp)
}

// RequestVote implements raft.Transport.
func (st *ShardTransport) RequestVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestVoteRequest, resp *raft.RequestVoteResponse) error {
	return st.call(target, args, resp)
}

// RequestPreVote implements raft.WithPreVote.
func (st *ShardTransport) RequestPreVote(_ raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return st.call(target, args, resp)
}

// TimeoutNow implements raft.Transport.
func (st *ShardTransport) TimeoutNow(_ raft.ServerID, target raft.ServerAddress, args *raft.TimeoutNowRequest, resp *raft.TimeoutNowResponse) error {
	return st.call(target, args, resp)
}

func (st *ShardTransport) call(target raft.ServerAddress, args, resp any) error {
	if st.isClosed() {
		return raft.ErrTransportShutdown
	}
	return st.net.call(st.id, target, args, resp)
}

// InstallSnapshot implements raft.Transport, on a connection of its own.
func (st *ShardTransport) InstallSnapshot(_ raft.ServerID, target raft.ServerAddress, args *raft.InstallSnapshotRequest, resp *raft.InstallSnapshotResponse, data io.Reader) error {
	if st.isClosed() {
		return raft.ErrTransportShutdown
	}
	return st.net.installSnapshot(st.id, string(target), args, resp, data)
}

// AppendEntriesPipeline implements raft.Transport. With MaxInflight 1 it
// returns raft.ErrPipelineReplicationNotSupported.
func (st *ShardTransport) AppendEntriesPipeline(_ raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	if st.net.cfg.MaxInflight < 2 {
		return nil, raft.ErrPipelineReplicationNotSupported
	}
	if st.isClosed() {
		return nil, raft.ErrTransportShutdown
	}
	p, err := st.net.peer(string(target))
	if err != nil {
		return nil, err
	}
	cc, err := p.conn()
	if err != nil {
		return nil, err
	}
	pl := newPipeline(st, cc, st.net.cfg.MaxInflight)
	st.mu.Lock()
	if st.closing {
		st.mu.Unlock()
		pl.Close()
		return nil, raft.ErrTransportShutdown
	}
	st.pipes[pl] = struct{}{}
	st.mu.Unlock()
	go pl.deliver()
	return pl, nil
}

func (st *ShardTransport) forgetPipeline(pl *pipeline) {
	st.mu.Lock()
	delete(st.pipes, pl)
	st.mu.Unlock()
}

// enqueue hands an inbound request to dispatch, or refuses it at once.
func (st *ShardTransport) enqueue(in inbound) {
	st.mu.Lock()
	switch {
	case st.closing:
		st.mu.Unlock()
		in.reply(nil, raft.ErrTransportShutdown)
		return
	case len(st.queue) >= maxQueuedPerShard:
		st.mu.Unlock()
		in.reply(nil, shardErr(st.id, errOverloaded))
		return
	}
	st.queue = append(st.queue, in)
	st.mu.Unlock()
	select {
	case st.kick <- struct{}{}:
	default:
	}
}

// dispatch gives queued requests to raft in arrival order, each after
// raft answered the one before, and sends the answers back.
func (st *ShardTransport) dispatch() {
	defer close(st.stopped)
	respCh := make(chan raft.RPCResponse, 1)
	var batch []inbound
	for {
		st.mu.Lock()
		batch, st.queue = st.queue, batch[:0]
		st.mu.Unlock()
		if len(batch) == 0 {
			select {
			case <-st.kick:
				continue
			case <-st.closed:
				st.drain()
				return
			}
		}
		for i := range batch {
			in := &batch[i]
			rpc := raft.RPC{Command: in.cmd, Reader: in.reader, RespChan: respCh}
			select {
			case st.consumeCh <- rpc:
			case <-st.closed:
				failAll(batch[i:])
				st.drain()
				return
			}
			select {
			case r := <-respCh:
				in.reply(r.Response, r.Error)
			case <-st.closed:
				failAll(batch[i:])
				st.drain()
				return
			}
			*in = inbound{} // let the request's memory go
		}
	}
}

func (st *ShardTransport) drain() {
	st.mu.Lock()
	q := st.queue
	st.queue = nil
	st.mu.Unlock()
	failAll(q)
}

func failAll(q []inbound) {
	for i := range q {
		q[i].reply(nil, raft.ErrTransportShutdown)
	}
}

// Close implements raft.WithClose: requests waiting for this shard fail,
// its pipelines close, and the shard's id is free to be opened again.
func (st *ShardTransport) Close() error {
	st.net.removeShard(st)
	st.mu.Lock()
	st.closeLocked()
	pipes := make([]*pipeline, 0, len(st.pipes))
	for pl := range st.pipes {
		pipes = append(pipes, pl)
	}
	st.mu.Unlock()
	for _, pl := range pipes {
		pl.Close()
	}
	<-st.stopped
	return nil
}

// closeLocked marks st closed; the caller holds st.mu or owns st alone.
func (st *ShardTransport) closeLocked() {
	st.closing = true
	st.once.Do(func() { close(st.closed) })
}

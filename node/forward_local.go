package node

import (
	"context"
	"errors"
	"fmt"

	"tally/forward"
	"tally/shard"
)

// maxDumpFrame bounds a forwarded dump (the frame limit is 64 MiB).
const maxDumpFrame = 48 << 20

// forwardLocal is the node as forward.Serve sees it: it serves requests
// other nodes forwarded here on this node's own replicas.
type forwardLocal struct{ n *Node }

func (l forwardLocal) Write(ctx context.Context, req forward.WriteRequest) (forward.WriteResponse, error) {
	res, err := l.n.localWrite(ctx, req.Shard, req.Ops)
	return forward.WriteResponse{Results: res}, err
}

func (l forwardLocal) Read(ctx context.Context, req forward.ReadRequest) (forward.ReadResponse, error) {
	vals, err := l.n.localRead(ctx, req.Shard, req.Names, req.Linearizable)
	return forward.ReadResponse{Values: vals}, err
}

func (l forwardLocal) ReadAt(ctx context.Context, req forward.ReadAtRequest) (forward.ReadAtResponse, error) {
	vals, idx, err := l.n.localReadAt(ctx, req.Shard, req.Names, req.Linearizable)
	return forward.ReadAtResponse{Index: idx, Values: vals}, err
}

func (l forwardLocal) Member(ctx context.Context, req forward.MemberRequest) (forward.MemberResponse, error) {
	ok, err := l.n.localMember(ctx, req.Shard, req.Name, req.Actor, req.Linearizable)
	return forward.MemberResponse{Member: ok}, err
}

func (l forwardLocal) Split(ctx context.Context, req forward.SplitRequest) (forward.SplitResponse, error) {
	got, code, err := l.n.localSplit(ctx, req.Shard, req.Name, req.Factor)
	return forward.SplitResponse{Factor: got, Code: code}, err
}

func (l forwardLocal) Card(ctx context.Context, req forward.CardRequest) (forward.CardResponse, error) {
	n, err := l.n.localCard(ctx, req.Shard, req.Name, req.Linearizable)
	return forward.CardResponse{Actors: n}, err
}

func (l forwardLocal) Replica(ctx context.Context, req forward.ReplicaRequest) (forward.ReplicaResponse, error) {
	inc, err := l.n.replicaIncarnation(ctx, req.ID)
	return forward.ReplicaResponse{Incarnation: inc}, err
}

func (l forwardLocal) Changes(ctx context.Context, req forward.ChangesRequest) (forward.ChangesResponse, error) {
	sh := l.n.shard(req.Shard)
	if sh == nil {
		return forward.ChangesResponse{}, forward.ErrNoShard
	}
	p, err := sh.Changes(req.After, req.Max)
	var ce *shard.CursorExpiredError
	switch {
	case errors.As(err, &ce):
		return forward.ChangesResponse{Status: forward.ChangesExpired, Floor: ce.Floor}, nil
	case errors.Is(err, shard.ErrChangesOff):
		return forward.ChangesResponse{Status: forward.ChangesOff}, nil
	}
	return forward.ChangesResponse{Page: p}, err
}

func (l forwardLocal) Dump(ctx context.Context, req forward.DumpRequest) (forward.DumpResponse, error) {
	sh := l.n.shard(req.Shard)
	if sh == nil {
		return forward.DumpResponse{}, forward.ErrNoShard
	}
	vals, idx := sh.Dump()
	// The answer is one forwarding frame: past the frame limit it would
	// break the connection every other forwarded request shares. Refuse
	// it instead; a node holding a replica dumps the shard itself.
	size := 0
	for _, v := range vals {
		size += len(v.Name) + 12
	}
	if size > maxDumpFrame {
		return forward.DumpResponse{}, fmt.Errorf("shard %d holds too many counters (%d) to dump through another node: dump from a node with a replica of it", req.Shard, len(vals))
	}
	return forward.DumpResponse{Index: idx, Counters: vals}, nil
}

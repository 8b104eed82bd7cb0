package node

import (
	"context"
	"errors"

	"tally/forward"
	"tally/shard"
)

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
	return forward.DumpResponse{Index: idx, Counters: vals}, nil
}

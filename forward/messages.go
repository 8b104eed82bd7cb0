package forward

import (
	"tally/fsm"
	"tally/shard"
)

// One typed request and response per operation a node forwards to a shard
// leader. Each knows its own wire encoding (the format of wire.go, kept
// byte for byte from the union encoding it replaced).

// WriteRequest applies Ops on Shard, which the receiver must lead.
type WriteRequest struct {
	Shard uint32
	Ops   []fsm.Op
}

// WriteResponse has one result per op, in order.
type WriteResponse struct {
	Results []fsm.Result
}

// ReadRequest reads the stored names (counters or sub-counters) of Shard.
type ReadRequest struct {
	Shard        uint32
	Names        []string
	Linearizable bool
}

// ReadResponse has one value per name, in order.
type ReadResponse struct {
	Values []shard.Lookup
}

// MemberRequest asks whether Actor is in the actor set of the counter Name.
type MemberRequest struct {
	Shard        uint32
	Name, Actor  string
	Linearizable bool
}

// MemberResponse answers a MemberRequest.
type MemberResponse struct {
	Member bool
}

// CardRequest asks for the size of the actor set of the counter Name.
type CardRequest struct {
	Shard        uint32
	Name         string
	Linearizable bool
}

// CardResponse answers a CardRequest.
type CardResponse struct {
	Actors int
}

// SplitRequest runs the split protocol on Shard, the home shard of the
// counter Name, to raise its split factor to Factor.
type SplitRequest struct {
	Shard  uint32
	Name   string
	Factor int
}

// SplitResponse is the split factor after the request and, if it was
// refused, why (fsm.ErrSplitShrink, fsm.ErrNotSplittable).
type SplitResponse struct {
	Factor int
	Code   fsm.Code
}

// ReplicaRequest asks which incarnation of node ID the receiver knows as
// a member of the cluster. A node starting on an empty data dir asks
// before it takes part in any shard: if the cluster knows another
// incarnation under its id, its disk was wiped or replaced, and joining as
// the old replica could cast a second vote in a term it already voted in.
type ReplicaRequest struct {
	ID string
}

// ReplicaResponse answers a ReplicaRequest: Incarnation is "" when the
// receiver knows none for that id.
type ReplicaResponse struct {
	Incarnation string
}

// request is a typed request as the client and server handle it.
type request interface {
	kind() uint8
	shardID() uint32
	encode(e *enc)         // the kind-specific body
	newResponse() response // an empty response to decode the answer into
}

// response is a typed response body (after its status byte).
type response interface {
	encode(e *enc)
	decode(d *dec)
}

func (r *WriteRequest) kind() uint8             { return reqWrite }
func (r *WriteRequest) shardID() uint32         { return r.Shard }
func (r *WriteRequest) newResponse() response   { return &WriteResponse{} }
func (r *ReadRequest) kind() uint8              { return reqRead }
func (r *ReadRequest) shardID() uint32          { return r.Shard }
func (r *ReadRequest) newResponse() response    { return &ReadResponse{} }
func (r *MemberRequest) kind() uint8            { return reqMember }
func (r *MemberRequest) shardID() uint32        { return r.Shard }
func (r *MemberRequest) newResponse() response  { return &MemberResponse{} }
func (r *CardRequest) kind() uint8              { return reqCard }
func (r *CardRequest) shardID() uint32          { return r.Shard }
func (r *CardRequest) newResponse() response    { return &CardResponse{} }
func (r *SplitRequest) kind() uint8             { return reqSplit }
func (r *SplitRequest) shardID() uint32         { return r.Shard }
func (r *SplitRequest) newResponse() response   { return &SplitResponse{} }
func (r *ReplicaRequest) kind() uint8           { return reqReplica }
func (r *ReplicaRequest) shardID() uint32       { return 0 }
func (r *ReplicaRequest) newResponse() response { return &ReplicaResponse{} }

// The ops travel in the fsm's own entry encoding (time unset: the leader
// stamps its own when it proposes).
func (r *WriteRequest) encode(e *enc) { e.Bytes(fsm.AppendEntry(nil, &fsm.Entry{Ops: r.Ops})) }

func (r *ReadRequest) encode(e *enc) {
	e.Bool(r.Linearizable)
	e.Uv(uint64(len(r.Names)))
	for _, n := range r.Names {
		e.Str(n)
	}
}

// A member request shares the read's layout with exactly two names.
func (r *MemberRequest) encode(e *enc) {
	e.Bool(r.Linearizable)
	e.Uv(2)
	e.Str(r.Name)
	e.Str(r.Actor)
}

func (r *SplitRequest) encode(e *enc) {
	e.Str(r.Name)
	e.Uv(uint64(r.Factor))
}

func (r *ReplicaRequest) encode(e *enc) { e.Str(r.ID) }

func (r *CardRequest) encode(e *enc) {
	e.Bool(r.Linearizable)
	e.Str(r.Name)
}

// decodeRequest reads the body of a request of the given kind; d.Err is
// set if it is malformed or of an unknown kind.
func decodeRequest(d *dec, kind uint8, sh uint32) request {
	switch kind {
	case reqWrite:
		raw := d.Raw()
		if d.Err != nil {
			return nil
		}
		e, err := fsm.DecodeEntry(raw)
		if err != nil {
			d.Fail()
			return nil
		}
		return &WriteRequest{Shard: sh, Ops: e.Ops}
	case reqRead, reqMember, reqReadAt:
		linear := d.U8() == 1
		k := d.Count()
		names := make([]string, 0, k)
		for j := 0; j < k; j++ {
			names = append(names, d.Str())
		}
		if kind == reqRead {
			return &ReadRequest{Shard: sh, Names: names, Linearizable: linear}
		}
		if kind == reqReadAt {
			return &ReadAtRequest{Shard: sh, Names: names, Linearizable: linear}
		}
		if len(names) != 2 {
			d.Fail()
			return nil
		}
		return &MemberRequest{Shard: sh, Name: names[0], Actor: names[1], Linearizable: linear}
	case reqSplit:
		name := d.Str()
		return &SplitRequest{Shard: sh, Name: name, Factor: int(d.Uv())}
	case reqCard:
		linear := d.U8() == 1
		return &CardRequest{Shard: sh, Name: d.Str(), Linearizable: linear}
	case reqReplica:
		return &ReplicaRequest{ID: d.Str()}
	case reqConfig, reqChange, reqHost:
		return decodeMembershipRequest(d, kind, sh)
	case reqChanges:
		return decodeChangesRequest(d, sh)
	case reqDump:
		return &DumpRequest{Shard: sh}
	}
	d.Fail()
	return nil
}

func (r *WriteResponse) encode(e *enc) {
	e.Uv(uint64(len(r.Results)))
	for _, x := range r.Results {
		e.V(x.Value)
		e.U8(uint8(x.Code))
		e.Bool(x.Changed)
		e.V(x.ExpiresAt)
		e.Uv(uint64(x.Split))
	}
}

func (r *WriteResponse) decode(d *dec) {
	r.Results = make([]fsm.Result, d.Count())
	for i := range r.Results {
		x := &r.Results[i]
		x.Value = d.V()
		x.Code = fsm.Code(d.U8())
		x.Changed = d.U8() == 1
		x.ExpiresAt = d.V()
		x.Split = uint16(d.Uv())
	}
}

func (r *ReadResponse) encode(e *enc) {
	e.Uv(uint64(len(r.Values)))
	for _, v := range r.Values {
		e.V(v.Value)
		e.V(v.ExpiresAt)
		e.Uv(uint64(v.Split))
	}
}

func (r *ReadResponse) decode(d *dec) {
	r.Values = make([]shard.Lookup, d.Count())
	for i := range r.Values {
		v := &r.Values[i]
		v.Value = d.V()
		v.ExpiresAt = d.V()
		v.Split = int(d.Uv())
	}
}

func (r *MemberResponse) encode(e *enc) { e.Bool(r.Member) }
func (r *MemberResponse) decode(d *dec) { r.Member = d.U8() == 1 }

func (r *CardResponse) encode(e *enc) { e.Uv(uint64(r.Actors)) }
func (r *CardResponse) decode(d *dec) { r.Actors = int(d.Uv()) }

func (r *SplitResponse) encode(e *enc) {
	e.Uv(uint64(r.Factor))
	e.U8(uint8(r.Code))
}

func (r *SplitResponse) decode(d *dec) {
	r.Factor = int(d.Uv())
	r.Code = fsm.Code(d.U8())
}

func (r *ReplicaResponse) encode(e *enc) { e.Str(r.Incarnation) }
func (r *ReplicaResponse) decode(d *dec) { r.Incarnation = d.Str() }

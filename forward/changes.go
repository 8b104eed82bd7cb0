package forward

import (
	"context"

	"tally/fsm"
	"tally/shard"
)

// ChangesRequest asks a replica of Shard for the changes after index After
// (shard.Shard.Changes), at most about Max of them.
type ChangesRequest struct {
	Shard uint32
	After uint64
	Max   int
}

// Why a ChangesResponse carries no page.
const (
	ChangesOK      = 0
	ChangesExpired = 1 // the replica's history starts after the cursor: see Floor
	ChangesOff     = 2 // the replica keeps no changes
)

// ChangesResponse is a page of changes, or why there is none.
type ChangesResponse struct {
	Status uint8
	Floor  uint64 // ChangesExpired: the history starts after this index
	Page   shard.ChangesPage
}

// DumpRequest asks a replica of Shard for every counter it holds and the
// index that state is at (shard.Shard.Dump).
type DumpRequest struct {
	Shard uint32
}

// DumpResponse answers a DumpRequest.
type DumpResponse struct {
	Index    uint64
	Counters []shard.NamedValue
}

func (r *ChangesRequest) kind() uint8           { return reqChanges }
func (r *ChangesRequest) shardID() uint32       { return r.Shard }
func (r *ChangesRequest) newResponse() response { return &ChangesResponse{} }
func (r *ChangesRequest) encode(e *enc)         { e.Uv(r.After); e.Uv(uint64(r.Max)) }

func (r *DumpRequest) kind() uint8           { return reqDump }
func (r *DumpRequest) shardID() uint32       { return r.Shard }
func (r *DumpRequest) newResponse() response { return &DumpResponse{} }
func (r *DumpRequest) encode(e *enc)         {}

func decodeChangesRequest(d *dec, sh uint32) request {
	after := d.Uv()
	return &ChangesRequest{Shard: sh, After: after, Max: int(min(d.Uv(), 1<<20))}
}

func (r *ChangesResponse) encode(e *enc) {
	e.U8(r.Status)
	e.Uv(r.Floor)
	e.Uv(r.Page.Through)
	e.Uv(uint64(len(r.Page.Batches)))
	for _, b := range r.Page.Batches {
		e.Uv(b.Index)
		e.V(b.Time)
		e.Uv(uint64(len(b.Changes)))
		for _, c := range b.Changes {
			e.Str(c.Name)
			e.V(c.Old)
			e.V(c.Value)
		}
	}
}

func (r *ChangesResponse) decode(d *dec) {
	r.Status = d.U8()
	r.Floor = d.Uv()
	r.Page.Through = d.Uv()
	r.Page.Batches = make([]shard.ChangeBatch, d.Count())
	for i := range r.Page.Batches {
		b := &r.Page.Batches[i]
		b.Index = d.Uv()
		b.Time = d.V()
		b.Changes = make([]fsm.Change, d.Count())
		for j := range b.Changes {
			c := &b.Changes[j]
			c.Name = d.Str()
			c.Old = d.V()
			c.Value = d.V()
		}
	}
}

func (r *DumpResponse) encode(e *enc) {
	e.Uv(r.Index)
	e.Uv(uint64(len(r.Counters)))
	for _, c := range r.Counters {
		e.Str(c.Name)
		e.V(c.Value)
	}
}

func (r *DumpResponse) decode(d *dec) {
	r.Index = d.Uv()
	r.Counters = make([]shard.NamedValue, d.Count())
	for i := range r.Counters {
		r.Counters[i].Name = d.Str()
		r.Counters[i].Value = d.V()
	}
}

// Changes forwards a ChangesRequest; it changes nothing.
func (c *Client) Changes(ctx context.Context, addr string, req ChangesRequest) (ChangesResponse, error) {
	r, err := c.do(ctx, addr, &req)
	if err != nil {
		return ChangesResponse{}, readOnly(err)
	}
	return *r.(*ChangesResponse), nil
}

// Dump forwards a DumpRequest; it changes nothing.
func (c *Client) Dump(ctx context.Context, addr string, req DumpRequest) (DumpResponse, error) {
	r, err := c.do(ctx, addr, &req)
	if err != nil {
		return DumpResponse{}, readOnly(err)
	}
	return *r.(*DumpResponse), nil
}

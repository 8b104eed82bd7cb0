package forward

import (
	"context"

	"tally/shard"
)

// ReadAtRequest is a ReadRequest whose answer also says which raft index
// of the replica's state the values reflect: what a watch needs to never
// show an older state after a newer one. (A kind of its own: the answer's
// layout differs from a read's.)
type ReadAtRequest struct {
	Shard        uint32
	Names        []string
	Linearizable bool
}

// ReadAtResponse holds the values and the index they reflect.
type ReadAtResponse struct {
	Index  uint64
	Values []shard.Lookup
}

func (r *ReadAtRequest) kind() uint8           { return reqReadAt }
func (r *ReadAtRequest) shardID() uint32       { return r.Shard }
func (r *ReadAtRequest) newResponse() response { return &ReadAtResponse{} }
func (r *ReadAtRequest) encode(e *enc) {
	(&ReadRequest{Names: r.Names, Linearizable: r.Linearizable}).encode(e)
}
func (r *ReadAtResponse) encode(e *enc) { e.Uv(r.Index); (&ReadResponse{Values: r.Values}).encode(e) }
func (r *ReadAtResponse) decode(d *dec) {
	r.Index = d.Uv()
	var rr ReadResponse
	rr.decode(d)
	r.Values = rr.Values
}

// ReadAt forwards a ReadAtRequest; like Read, it changes nothing.
func (c *Client) ReadAt(ctx context.Context, addr string, req ReadAtRequest) (ReadAtResponse, error) {
	r, err := c.do(ctx, addr, &req)
	if err != nil {
		return ReadAtResponse{}, readOnly(err)
	}
	return *r.(*ReadAtResponse), nil
}

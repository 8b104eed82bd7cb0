package forward

import (
	"context"

	"tally/shard"
)

// Messages of replica placement: the coordinator asks a shard's leader
// for its configuration and changes it, and tells a node to open or close
// its replica of a shard.

// ConfigRequest asks for the receiver's view of Shard's configuration;
// with Leader set, only its leader answers (others: NotLeader). Node, when
// set, is the node the sender means: another node at that address (a
// replacement on a removed node's address) refuses.
type ConfigRequest struct {
	Shard  uint32
	Leader bool
	Node   string
}

// ConfigResponse is the configuration, and the replica's applied index
// (how far a learner has caught up).
type ConfigResponse struct {
	Config  shard.Configuration
	Applied uint64
}

// Change kinds of a ChangeRequest.
const (
	ChangeAddLearner = 1
	ChangePromote    = 2
	ChangeRemove     = 3
	ChangeTransfer   = 4 // leadership to Node
)

// ChangeRequest asks the leader of Shard to change its configuration (or
// hand its leadership to Node), refused if the configuration is no longer
// at PrevIndex.
type ChangeRequest struct {
	Shard      uint32
	Kind       uint8
	Node, Addr string
	PrevIndex  uint64
}

// ChangeResponse answers a ChangeRequest.
type ChangeResponse struct{}

// HostRequest tells node Node, the receiver, to open (an empty replica,
// which its leader then fills) or to close and delete its replica of
// Shard; another node at that address refuses.
type HostRequest struct {
	Shard uint32
	Open  bool
	Node  string
}

// HostResponse answers a HostRequest.
type HostResponse struct{}

func (r *ConfigRequest) kind() uint8           { return reqConfig }
func (r *ConfigRequest) shardID() uint32       { return r.Shard }
func (r *ConfigRequest) newResponse() response { return &ConfigResponse{} }
func (r *ChangeRequest) kind() uint8           { return reqChange }
func (r *ChangeRequest) shardID() uint32       { return r.Shard }
func (r *ChangeRequest) newResponse() response { return &ChangeResponse{} }
func (r *HostRequest) kind() uint8             { return reqHost }
func (r *HostRequest) shardID() uint32         { return r.Shard }
func (r *HostRequest) newResponse() response   { return &HostResponse{} }

func (r *ConfigRequest) encode(e *enc) {
	e.Bool(r.Leader)
	e.Str(r.Node)
}

func (r *ChangeRequest) encode(e *enc) {
	e.U8(r.Kind)
	e.Str(r.Node)
	e.Str(r.Addr)
	e.Uv(r.PrevIndex)
}

func (r *HostRequest) encode(e *enc) {
	e.Bool(r.Open)
	e.Str(r.Node)
}

func (r *ConfigResponse) encode(e *enc) {
	e.Uv(r.Config.Index)
	e.Uv(r.Config.Commit)
	e.Uv(r.Applied)
	e.Uv(uint64(len(r.Config.Servers)))
	for _, s := range r.Config.Servers {
		e.Str(s.ID)
		e.Str(s.Addr)
		e.Bool(s.Voter)
	}
}

func (r *ConfigResponse) decode(d *dec) {
	r.Config.Index, r.Config.Commit, r.Applied = d.Uv(), d.Uv(), d.Uv()
	n := d.Count()
	r.Config.Servers = make([]shard.Server, 0, n)
	for range n {
		r.Config.Servers = append(r.Config.Servers, shard.Server{ID: d.Str(), Addr: d.Str(), Voter: d.U8() == 1})
	}
}

func (r *ChangeResponse) encode(*enc) {}
func (r *ChangeResponse) decode(*dec) {}
func (r *HostResponse) encode(*enc)   {}
func (r *HostResponse) decode(*dec)   {}

// decodeMembershipRequest reads the body of a placement request.
func decodeMembershipRequest(d *dec, kind uint8, sh uint32) request {
	switch kind {
	case reqConfig:
		return &ConfigRequest{Shard: sh, Leader: d.U8() == 1, Node: d.Str()}
	case reqChange:
		return &ChangeRequest{Shard: sh, Kind: d.U8(), Node: d.Str(), Addr: d.Str(), PrevIndex: d.Uv()}
	case reqHost:
		return &HostRequest{Shard: sh, Open: d.U8() == 1, Node: d.Str()}
	}
	d.Fail()
	return nil
}

// Config asks the node at addr for its view of a shard's configuration.
func (c *Client) Config(ctx context.Context, addr string, req ConfigRequest) (ConfigResponse, error) {
	r, err := c.do(ctx, addr, &req)
	if err != nil {
		return ConfigResponse{}, readOnly(err)
	}
	return *r.(*ConfigResponse), nil
}

// Change asks the shard leader at addr for a configuration change. An
// unknown outcome is possible; the caller reads the configuration again.
func (c *Client) Change(ctx context.Context, addr string, req ChangeRequest) error {
	_, err := c.do(ctx, addr, &req)
	return err
}

// Host tells the node at addr to open or close its replica of a shard.
func (c *Client) Host(ctx context.Context, addr string, req HostRequest) error {
	_, err := c.do(ctx, addr, &req)
	return err
}

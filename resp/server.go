package resp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"tally/auth"
	"tally/node"
)

// Core is what the listener needs from a tally node (*node.Node is one).
// AddBatch takes every increment of one pipeline at once, so that those
// bound for one shard share one raft entry.
type Core interface {
	AddBatch(ctx context.Context, reqs []node.AddRequest) ([]node.AddOutcome, error)
	Add(ctx context.Context, req node.AddRequest) (node.AddResult, error)
	ReadMany(ctx context.Context, names []string, c node.Consistency) ([]node.ReadResult, error)

	// The whole-counter operations behind DEL, SET and EXPIRE.
	Delete(ctx context.Context, name string) (bool, error)
	Set(ctx context.Context, name string, value int64, ttl time.Duration) error
	Expire(ctx context.Context, name string, ttl time.Duration) (bool, error)

	// The actor set as a Redis set: SADD/SREM take every member of one
	// command in one call (one raft entry), SISMEMBER and SCARD read it.
	Actors(ctx context.Context, name string, actors []string, add bool) (changed int, value int64, err error)
	IsMember(ctx context.Context, req node.MemberRequest) (bool, error)
	ActorCount(ctx context.Context, name string, c node.Consistency) (int, error)
}

var _ Core = (*node.Node)(nil)

// Config sets up a listener.
type Config struct {
	Core     Core
	Limits   Limits
	MaxConns int           // open client connections at most (default 10,000); further ones are closed at once
	Timeout  time.Duration // per command batch: how long a write or read may take (default 10 s)
	// WriteTimeout closes a connection whose client does not read its
	// replies (default 30 s), so a stuck client cannot pin memory.
	WriteTimeout time.Duration
	// AuthTimeout bounds a TLS handshake and, with Tokens, each wait for
	// the next command until the connection authenticates (default 10 s).
	AuthTimeout time.Duration
	NodeID      string // answered by HELLO and INFO
	// Router, when set, answers the CLUSTER commands; Redirect says
	// whether keys led elsewhere are forwarded or redirected.
	Router   Router
	Redirect Redirect
	// Tokens, when set, make a connection AUTH (or HELLO … AUTH) with a
	// token before its commands run; a token's role bounds what it may run.
	Tokens *auth.Tokens
	Logger *slog.Logger
}

// Server answers RESP clients. It is a node.Frontend: the node starts it
// on its RESP listener and drains it on shutdown.
type Server struct {
	cfg    Config
	log    *slog.Logger
	nextID atomic.Int64
	open   atomic.Int64

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]*conn
	closed bool
	wg     sync.WaitGroup
	stop   context.CancelFunc
	ctx    context.Context
}

// New makes a server; Serve starts it.
func New(cfg Config) *Server {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 10000
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.AuthTimeout <= 0 {
		cfg.AuthTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, stop := context.WithCancel(context.Background())
	return &Server{cfg: cfg, log: cfg.Logger.With("component", "resp"), conns: map[net.Conn]*conn{}, ctx: ctx, stop: stop}
}

// Serve answers clients on ln until Shutdown or Close; it returns
// net.ErrClosed then.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	s.ln = ln
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	s.log.Info("resp listening", "addr", ln.Addr().String())
	var delay time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return net.ErrClosed
			}
			// A temporary failure (out of file descriptors): back off
			// instead of spinning.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("accept failed", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		if s.open.Add(1) > int64(s.cfg.MaxConns) {
			s.open.Add(-1)
			// Off the accept loop: over TLS the write runs the handshake
			// first, and a silent client must not stall accepting.
			go func() {
				c.SetDeadline(time.Now().Add(time.Second))
				c.Write([]byte("-ERR max number of clients reached\r\n"))
				c.Close()
			}()
			continue
		}
		cn := newConn(s, c)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			s.open.Add(-1)
			c.Close()
			return net.ErrClosed
		}
		s.conns[c] = cn
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer s.open.Add(-1)
			cn.serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// Addr is the listening address (nil before Serve).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Shutdown stops accepting and lets every connection finish the commands
// it is running, then closes it; at ctx's end it closes what is left.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	for _, cn := range s.conns {
		cn.closeWhenIdle()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		return ctx.Err()
	}
}

// Close closes the listener and every connection at once, and waits for
// the commands running on them to end.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.stop()
	s.wg.Wait()
	return nil
}

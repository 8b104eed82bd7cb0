package resp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Backend is what the listener needs from a tally node. Add takes every
// increment of one pipeline at once, so that those bound for one shard
// share one raft entry; results come back in the order of adds.
type Backend interface {
	Add(ctx context.Context, adds []Add) []AddResult
	Read(ctx context.Context, names []string, linear bool) ([]Counter, error)
}

// Add is one increment (INCR, INCRBY, DECR, DECRBY, TALLY.INCRBY).
type Add struct {
	Name           string
	Delta          int64
	Min, Max       int64
	HasMin, HasMax bool
	TTL            time.Duration // window of a counter this add creates; 0 = none
	Key            string        // idempotency id; "" = none
}

// AddResult is an add's outcome: the counter's value after it, or Err.
type AddResult struct {
	Value int64
	Err   error
}

// Counter is what a read returns for one name.
type Counter struct {
	Value     int64
	ExpiresAt time.Time // zero: the counter does not expire
	Split     int
}

// Config sets up a listener.
type Config struct {
	Backend  Backend
	Limits   Limits
	MaxConns int           // open client connections at most (default 10,000); further ones are closed at once
	Timeout  time.Duration // per command batch: how long a write or read may take (default 10 s)
	// WriteTimeout closes a connection whose client does not read its
	// replies (default 30 s), so a stuck client cannot pin memory.
	WriteTimeout time.Duration
	NodeID       string // answered by HELLO and INFO
	// Router, when set, answers the CLUSTER commands; Redirect says
	// whether keys led elsewhere are forwarded or redirected.
	Router   Router
	Redirect Redirect
	Logger   *slog.Logger
}

// Server is a running RESP listener.
type Server struct {
	cfg    Config
	ln     net.Listener
	log    *slog.Logger
	nextID atomic.Int64
	open   atomic.Int64

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
	stop   context.CancelFunc
	ctx    context.Context
}

// Serve starts answering clients on ln until Close.
func Serve(ln net.Listener, cfg Config) *Server {
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 10000
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	ctx, stop := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, ln: ln, log: cfg.Logger.With("component", "resp"), conns: map[net.Conn]struct{}{}, ctx: ctx, stop: stop}
	s.wg.Go(s.acceptLoop)
	s.log.Info("resp listening", "addr", ln.Addr().String())
	return s
}

// Addr is the listening address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

func (s *Server) acceptLoop() {
	var delay time.Duration
	for {
		c, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
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
			c.Write([]byte("-ERR max number of clients reached\r\n"))
			c.Close()
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer s.open.Add(-1)
			newConn(s, c).serve()
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

// Close stops accepting, closes every client connection and waits for
// their commands to finish.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	err := s.ln.Close()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.stop()
	s.wg.Wait()
	return err
}

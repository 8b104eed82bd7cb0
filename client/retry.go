package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
)

// maxResponse bounds how much of an answer is read: a 1,000-name MultiGet
// is well under 1 MiB, so anything near this is not a tally node.
const maxResponse = 32 << 20

// APIError is an error answer from the server (or a request the client
// refused to send because the server would answer it with this 400).
type APIError struct {
	Status  int
	Code    string // e.g. "bad_name", "overflow", "no_leader", "outcome_unknown"
	Message string
	Value   *int64 // the counter's current value, on a 409

	retryAfter time.Duration // from a 503's Retry-After header
}

func (e *APIError) Error() string {
	s := fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message)
	if e.Value != nil {
		s += fmt.Sprintf(" (value %d)", *e.Value)
	}
	return s
}

// IsOutcomeUnknown reports whether err means a write may or may not have
// been applied: the server said outcome_unknown, or an attempt failed after
// the request may have reached a node and no later attempt settled it.
// Retrying with the same idempotency key is safe and settles it.
func IsOutcomeUnknown(err error) bool {
	var ou *outcomeUnknownError
	if errors.As(err, &ou) {
		return true
	}
	var ae *APIError
	return errors.As(err, &ae) && ae.Code == "outcome_unknown"
}

type outcomeUnknownError struct {
	attempts int
	last     error
}

func (e *outcomeUnknownError) Error() string {
	return fmt.Sprintf("outcome unknown: the write may or may not have counted (%d attempts, last: %v)", e.attempts, e.last)
}

func (e *outcomeUnknownError) Unwrap() error { return e.last }

// sendError is a failure below HTTP: no status came back. sent says a
// connection was obtained, so the node may have received the request.
type sendError struct {
	err  error
	sent bool
}

func (e *sendError) Error() string { return e.err.Error() }
func (e *sendError) Unwrap() error { return e.err }

// call describes one API request.
type call struct {
	method string
	path   string // already escaped
	query  url.Values
	body   any    // JSON-encoded when non-nil
	key    string // Idempotency-Key, for writes
	write  bool   // an ambiguous failure of a write is reported as outcome unknown
	name   string // the one counter the call is about, "" when it has no home shard to route to
	plain  bool   // a plain add: a split counter's may go to a sub-counter's leader
}

// routed returns the leader cl should go to, "" when the client does not
// route or knows none.
func (c *Client) routed(cl *call) string {
	if c.routes == nil || cl.name == "" {
		return ""
	}
	if cl.plain {
		// Every write carries a key, so a split counter's add goes to
		// the sub-counter its key routes to.
		return c.routes.Add(cl.name, cl.key, 0)
	}
	return c.routes.Home(cl.name)
}

// do runs cl with retries: 503s and connection errors are retried on the
// next address with exponential backoff until the retry deadline or ctx
// ends; any other answer is final. out receives the 200 answer. Each
// attempt goes to cl's shard leader when known, unless that address just
// failed: the next address forwards it while the map is refreshed.
func (c *Client) do(ctx context.Context, cl call, out any) error {
	var body []byte
	if cl.body != nil {
		var err error
		if body, err = json.Marshal(cl.body); err != nil {
			return err
		}
	}
	if c.retryDeadline > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.retryDeadline)
		defer cancel()
	}
	start := c.next.Add(1) - 1 // spread concurrent calls over the nodes
	backoff := c.minBackoff
	ambiguous := false
	var prev error    // the previous attempt's error
	var failed string // the address the previous attempt failed on
	for n := uint64(0); ; n++ {
		base := c.bases[(start+n)%uint64(len(c.bases))]
		if r := c.routed(&cl); r != "" && r != failed {
			base = r
		}
		resent, err := c.attempt(ctx, base, cl, body, out)
		// net/http resends a request that carries an Idempotency-Key on
		// its own when a reused connection drops it: the first sending
		// may have been applied, as after a lost connection of ours.
		ambiguous = ambiguous || (cl.write && resent)
		failed = ""
		if err != nil && c.routes != nil && routeStale(err) {
			failed = base
			c.routes.Failed()
		}
		if err == nil {
			// Even after an ambiguous attempt: the key made this answer
			// the first (and only) application's result.
			return nil
		}
		report := err
		if prev != nil && ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			// Cut off by the deadline: the attempt before says more.
			report = prev
		}
		prev = err
		wait := jitter(backoff)
		backoff = min(2*backoff, c.maxBackoff)
		var ae *APIError
		var se *sendError
		switch {
		case errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable:
			ambiguous = ambiguous || (cl.write && ae.Code == "outcome_unknown")
			wait = max(wait, ae.retryAfter)
		case errors.As(err, &se):
			ambiguous = ambiguous || (cl.write && se.sent)
			if !se.sent && (n+1)%uint64(len(c.bases)) != 0 {
				// A node that refused the connection is down: try the
				// next one now; back off only once every node was tried.
				wait = 0
			}
		case ae != nil && ae.Status >= 400 && ae.Status < 500:
			// A 4xx is the server's final word. After an ambiguous attempt
			// it also settles that one: had it counted, the key would have
			// returned its result instead.
			return err
		default:
			// Any other status (a 500, a proxy's 502) or an undecodable
			// answer is final too, but settles nothing.
			if ambiguous {
				return giveUp(report, true, n+1)
			}
			return err
		}
		// Give up now rather than sleep into the deadline: no attempt could follow.
		deadline, ok := ctx.Deadline()
		if ctx.Err() != nil || c.retryDeadline <= 0 || (ok && time.Until(deadline) <= wait) {
			return giveUp(report, ambiguous, n+1)
		}
		if wait == 0 {
			continue
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return giveUp(report, ambiguous, n+1)
		case <-t.C:
		}
	}
}

// routeStale reports whether err may mean the route it took is stale: no
// answer at all, or a 5xx (a node shutting down, an election).
func routeStale(err error) bool {
	var ae *APIError
	var se *sendError
	return errors.As(err, &se) || (errors.As(err, &ae) && ae.Status >= 500)
}

func giveUp(last error, ambiguous bool, attempts uint64) error {
	if ambiguous {
		return &outcomeUnknownError{attempts: int(attempts), last: last}
	}
	return fmt.Errorf("gave up after %d attempts: %w", attempts, last)
}

// jitter returns a wait in [b/2, b], so clients that failed together do
// not retry in lockstep.
func jitter(b time.Duration) time.Duration {
	if b <= 1 {
		return b
	}
	return b/2 + rand.N(b/2+1)
}

// attempt sends cl to base. Errors are *APIError for an HTTP error
// answer, *sendError when no answer came, or a decoding error. resent
// reports that net/http sent the request more than once.
func (c *Client) attempt(ctx context.Context, base string, cl call, body []byte, out any) (resent bool, err error) {
	var conns atomic.Int32
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(httptrace.GotConnInfo) { conns.Add(1) },
	})
	err = c.send(ctx, base, cl, body, out, &conns)
	return conns.Load() > 1, err
}

// send makes one HTTP request (which net/http may send more than once, on
// a new connection, if a reused one fails; conns counts the connections).
func (c *Client) send(ctx context.Context, base string, cl call, body []byte, out any, conns *atomic.Int32) error {
	u := base + cl.path
	if len(cl.query) > 0 {
		u += "?" + cl.query.Encode()
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, cl.method, u, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "tally-go-client")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if cl.key != "" {
		req.Header.Set("Idempotency-Key", cl.key)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return &sendError{err: err, sent: conns.Load() > 0}
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	resp.Body.Close()
	if err != nil {
		// The status may have been 200, but a retry with the same key
		// returns the same answer, so treat it like a lost connection.
		return &sendError{err: fmt.Errorf("reading answer: %w", err), sent: true}
	}
	if resp.StatusCode != http.StatusOK {
		return apiError(resp, data)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decoding answer: %w", cl.method, cl.path, err)
	}
	return nil
}

// apiError turns an error answer into an *APIError. A body that is not
// tally's error JSON (a proxy's page, say) still yields a usable code.
func apiError(resp *http.Response, data []byte) *APIError {
	var env struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Value   *int64 `json:"value"`
		} `json:"error"`
	}
	e := &APIError{Status: resp.StatusCode}
	if json.Unmarshal(data, &env) == nil && env.Error.Code != "" {
		e.Code, e.Message, e.Value = env.Error.Code, env.Error.Message, env.Error.Value
	} else {
		e.Code = "http_" + strconv.Itoa(resp.StatusCode)
		if resp.StatusCode == http.StatusServiceUnavailable {
			e.Code = "unavailable"
		}
		e.Message = http.StatusText(resp.StatusCode)
	}
	if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
		e.retryAfter = time.Duration(s) * time.Second
	}
	return e
}

package httpapi

import (
	"net/http"
	"time"
)

// stream writes a long-lived answer (a watch, the changefeed, a dump),
// which outlives the server's read and write timeouts: they are lifted,
// and each write is bounded on its own instead.
type stream struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	deadline time.Time
}

// writeWithin is how long one write of a stream may take. The deadline
// is moved only once half of it is used, not on every write (setting it
// costs more than the write on a busy stream).
const writeWithin = 30 * time.Second

// startStream lifts the read deadline (when the request's body is read
// on, it is not) and sets the answer's content type.
func startStream(w http.ResponseWriter, contentType string, liftRead bool) *stream {
	s := &stream{w: w, rc: http.NewResponseController(w)}
	if liftRead {
		s.rc.SetReadDeadline(time.Time{})
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	return s
}

// extend gives the next write its deadline.
func (s *stream) extend() {
	if now := time.Now(); s.deadline.Sub(now) < writeWithin/2 {
		s.deadline = now.Add(writeWithin)
		s.rc.SetWriteDeadline(s.deadline)
	}
}

// send writes parts and flushes them to the client; false when the
// client is gone.
func (s *stream) send(parts ...[]byte) bool {
	s.extend()
	for _, p := range parts {
		if _, err := s.w.Write(p); err != nil {
			return false
		}
	}
	return s.rc.Flush() == nil
}

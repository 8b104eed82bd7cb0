// Package ui is tally's dashboard: a static page (HTML, CSS and plain
// JavaScript, embedded in the binary) and the one endpoint the page
// cannot do without, GET api/nodes, which scrapes every member's
// Prometheus /metrics and /v1/hot on the page's behalf (a browser may
// not fetch another node's origin).
//
// Everything else the page shows it reads from the node's public API
// (/v1/cluster, the SSE watch), so the dashboard never sees more than a
// caller with the same token could.
//
// The package knows nothing of nodes: its consumer declares who the
// members are and how to reach them through the Cluster interface.
package ui

import (
	"context"
	"embed"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
)

// Cluster is what the dashboard needs of the node that serves it.
type Cluster interface {
	// Members are the cluster's members as the serving node sees them.
	Members(ctx context.Context) []Member
	// Client reaches the members' HTTP APIs (the node's TLS trust when
	// it runs TLS). It must not follow redirects: the caller's token
	// goes with every scrape and must reach only the member asked.
	Client() *http.Client
}

// Member is one member of the cluster.
type Member struct {
	ID string
	// URL is the base of its HTTP API, scheme included
	// ("https://10.0.0.2:7070").
	URL string
	// State is its place in the cluster (active, leaving, left,
	// removed), Health what gossip says of it (alive, dead).
	State, Health string
	// Verified says the member proved it belongs to the cluster (mutual
	// TLS with the cluster's CA), or is the serving node itself: only
	// then is the viewer's token sent to it.
	Verified bool
}

//go:embed static
var static embed.FS

// assets is the static page, rooted at the dashboard's own URL.
var assets = func() fs.FS {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embed directive above guarantees the directory
	}
	return sub
}()

// Public reports whether path (relative to where the dashboard is
// mounted: "/", "/app.js") is one of the page's static files. They are
// the same bytes on every node of every cluster and reveal nothing, so
// a server may serve them without a token: the page then asks for one.
// Every other path, api/ included, should need the read role.
func Public(path string) bool {
	if path == "" || path == "/" {
		return true
	}
	name := strings.TrimPrefix(path, "/")
	if name == "index.html" || strings.Contains(name, "/") {
		return false // index.html redirects; nothing static is nested
	}
	info, err := fs.Stat(assets, name)
	return err == nil && !info.IsDir()
}

// Handler serves the dashboard; mount it on a path of its own ("/ui").
// log receives the scrapes that fail, at debug level (the page shows
// them too).
func Handler(c Cluster, log *slog.Logger) http.Handler {
	return newHandler(c, log, scrapeTimeout)
}

func newHandler(c Cluster, log *slog.Logger, timeout time.Duration) http.Handler {
	if log == nil {
		log = slog.Default()
	}
	s := &scraper{cluster: c, log: log, timeout: timeout, slots: make(chan struct{}, maxParallel)}
	files := http.FileServerFS(assets)
	r := chi.NewRouter()
	r.Use(secureHeaders)
	r.Get("/api/nodes", s.handleNodes)
	r.Get("/", func(w http.ResponseWriter, r *http.Request) {
		// Mounted at /ui, the page is also reached as /ui (no slash);
		// its relative URLs (app.js, api/nodes, ../v1/cluster) resolve
		// only under /ui/.
		if !strings.HasSuffix(r.URL.Path, "/") {
			http.Redirect(w, r, r.URL.Path+"/", http.StatusMovedPermanently)
			return
		}
		serveFile(w, r, files, "/")
	})
	r.Get("/{file}", func(w http.ResponseWriter, r *http.Request) {
		name := "/" + chi.URLParam(r, "file")
		if !Public(name) || name == "/" {
			http.NotFound(w, r)
			return
		}
		serveFile(w, r, files, name)
	})
	return r
}

// serveFile serves one embedded file by its name under the dashboard,
// whatever the prefix the dashboard is mounted at.
func serveFile(w http.ResponseWriter, r *http.Request, files http.Handler, name string) {
	r2 := r.Clone(r.Context())
	r2.URL.Path, r2.URL.RawPath = name, ""
	files.ServeHTTP(w, r2)
}

// secureHeaders keep the page to its own origin: scripts, styles and
// connections only from the node that served it (a counter name is
// data, never markup), and no framing by other sites.
func secureHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		next.ServeHTTP(w, r)
	})
}

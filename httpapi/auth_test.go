package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"

	"tally/auth"
	"tally/node"
)

// routesOnly is enough of a Core to build the router.
type routesOnly struct{ Core }

func (routesOnly) Config() node.Config {
	return node.Config{EnableFaults: true, Pprof: true}
}
func (routesOnly) Metrics() *prometheus.Registry { return prometheus.NewRegistry() }

// TestEveryRouteHasTheRoleItNeeds walks the whole router (faults and
// profiles included): each route must be in the table, so a new route
// cannot ship without a decision about who may call it.
func TestEveryRouteHasTheRoleItNeeds(t *testing.T) {
	want := map[string]auth.Role{
		"POST /v1/counters/{name}/incr":             auth.Write,
		"POST /v1/counters/{name}/decr":             auth.Write,
		"GET /v1/counters/{name}":                   auth.Read,
		"GET /v1/counters/{name}/watch":             auth.Read,
		"DELETE /v1/counters/{name}":                auth.Write,
		"PUT /v1/counters/{name}/actors/{actor}":    auth.Write,
		"DELETE /v1/counters/{name}/actors/{actor}": auth.Write,
		"GET /v1/counters/{name}/actors/{actor}":    auth.Read,
		"GET /v1/counters":                          auth.Read,
		"POST /v1/batch":                            auth.Write,
		"POST /v1/counters/{name}/split":            auth.Admin,
		"GET /v1/hot":                               auth.Read,
		"GET /v1/changes":                           auth.Read,
		"GET /v1/changes/dump":                      auth.Read,
		"GET /v1/cluster":                           auth.Read,
		"POST /v1/cluster/nodes/{id}/decommission":  auth.Admin,
		"DELETE /v1/cluster/nodes/{id}":             auth.Admin,
		"GET /healthz":                              auth.None,
		"GET /readyz":                               auth.None,
		"GET /v1/faults":                            auth.Admin,
		"POST /v1/faults":                           auth.Admin,
		"GET /v1/debug/shards":                      auth.Admin,
		"GET /ui/":                                  auth.None,
		"GET /ui/{file}":                            auth.None, // walked as app.js; TestDashboardRoles has the rest
		"GET /ui/api/nodes":                         auth.Read,
	}
	r := Handler(routesOnly{}).(chi.Routes)
	seen := 0
	err := chi.Walk(r, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		path := strings.NewReplacer("{name}", "c", "{actor}", "a", "{id}", "n1", "{file}", "app.js", "/*", "/pprof/").Replace(route)
		got := requiredRole(httptest.NewRequest(method, path, nil))
		key := method + " " + route
		switch w, ok := want[key]; {
		case route == "/metrics": // a mounted handler: every method routes to it
			if method == "GET" && got != auth.Read {
				t.Errorf("%s: role %v, want read", key, got)
			}
		case strings.HasPrefix(route, "/debug/"):
			if got != auth.Admin {
				t.Errorf("%s: role %v, want admin", key, got)
			}
		case !ok:
			t.Errorf("%s: not in the table; decide which role it needs", key)
		case got != w:
			t.Errorf("%s: role %v, want %v", key, got, w)
		default:
			seen++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(want) {
		t.Errorf("walked %d of the table's %d routes", seen, len(want))
	}
}

// TestDashboardRoles: only the dashboard's static files are open; any
// other path under /ui, however spelt, needs read.
func TestDashboardRoles(t *testing.T) {
	for _, c := range []struct {
		method, path string
		want         auth.Role
	}{
		{"GET", "/ui", auth.None},
		{"GET", "/ui/", auth.None},
		{"HEAD", "/ui/", auth.None},
		{"GET", "/ui/app.js", auth.None},
		{"GET", "/ui/style.css", auth.None},
		{"GET", "/ui/api/nodes", auth.Read},
		{"GET", "/ui//api/nodes", auth.Read},
		{"GET", "/ui/api/", auth.Read},
		{"GET", "/ui/index.html", auth.Read},
		{"GET", "/ui/nothing.js", auth.Read},
		{"GET", "/ui/static/app.js", auth.Read},
		{"GET", "/ui/../v1/cluster", auth.Read},
		{"POST", "/ui/", auth.Read},
		{"GET", "/uix", auth.Read},
	} {
		if got := requiredRole(httptest.NewRequest(c.method, "http://n1"+c.path, nil)); got != c.want {
			t.Errorf("%s %s: role %v, want %v", c.method, c.path, got, c.want)
		}
	}
}

func TestBearer(t *testing.T) {
	for h, want := range map[string]string{"Bearer abc": "abc", "bearer  abc ": "abc", "Basic abc": "", "Bearer": "", "": ""} {
		r := httptest.NewRequest("GET", "/", nil)
		if h != "" {
			r.Header.Set("Authorization", h)
		}
		if got := bearer(r); got != want {
			t.Errorf("bearer(%q) = %q, want %q", h, got, want)
		}
	}
}

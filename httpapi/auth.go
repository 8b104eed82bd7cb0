package httpapi

import (
	"net/http"
	"strings"

	"tally/auth"
	"tally/ui"
)

// requiredRole is the role a request needs. It is decided from the method
// and path alone, before routing, so an unauthenticated caller learns
// nothing about which routes exist.
func requiredRole(r *http.Request) auth.Role {
	p := r.URL.Path
	switch {
	case p == "/healthz" || p == "/readyz":
		return auth.None
	case p == "/ui" || strings.HasPrefix(p, "/ui/"):
		// The dashboard's static files reveal nothing (the page asks for
		// a token); what it reads, its api/ included, needs read.
		if ui.Public(strings.TrimPrefix(p, "/ui")) && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
			return auth.None
		}
		return auth.Read
	case strings.HasPrefix(p, "/v1/faults"), strings.HasPrefix(p, "/v1/debug"), strings.HasPrefix(p, "/debug/"),
		strings.HasPrefix(p, "/v1/cluster/nodes/"),
		r.Method == http.MethodPost && strings.HasPrefix(p, "/v1/counters/") && strings.HasSuffix(p, "/split"):
		return auth.Admin
	case r.Method == http.MethodGet || r.Method == http.MethodHead:
		return auth.Read
	}
	return auth.Write
}

// bearer returns the token of an "Authorization: Bearer TOKEN" header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) > len(prefix) && strings.EqualFold(h[:len(prefix)], prefix) {
		return strings.TrimSpace(h[len(prefix):])
	}
	return ""
}

func (a *api) authorize(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		need := requiredRole(r)
		if need == auth.None {
			next.ServeHTTP(w, r)
			return
		}
		has := a.tokens.Role(bearer(r))
		switch {
		case has == auth.None:
			w.Header().Set("WWW-Authenticate", `Bearer realm="tally"`)
			writeError(w, http.StatusUnauthorized, "unauthorized", "a valid token is needed: Authorization: Bearer TOKEN; nothing was applied", nil)
		case has < need:
			writeError(w, http.StatusForbidden, "forbidden", "this token's role ("+has.String()+") may not do this; it needs "+need.String()+"; nothing was applied", nil)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

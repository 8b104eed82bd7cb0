package httpapi

import (
	"context"
	"crypto/x509"
	"net/http"
	"sync"
	"time"

	"tally/ui"
)

// dashboard is what package ui needs of this node: the members, with the
// URLs of their HTTP APIs, and a client that reaches them.
type dashboard struct {
	core Core

	mu     sync.Mutex
	pool   *x509.CertPool // the CA pool client trusts; a reload makes a new one
	client *http.Client
}

var _ ui.Cluster = (*dashboard)(nil)

func (d *dashboard) scheme() string {
	if d.core.Config().TLS != nil {
		return "https"
	}
	return "http"
}

func (d *dashboard) Members(ctx context.Context) []ui.Member {
	st := d.core.ClusterDetail(ctx)
	scheme := d.scheme()
	// With TLS, a member is listed only once it proved itself with the
	// cluster's CA; without, any gossip peer may be listed.
	tls := d.core.Config().TLS != nil
	out := make([]ui.Member, 0, len(st.Members))
	for _, m := range st.Members {
		u := ""
		if m.HTTP != "" {
			u = scheme + "://" + m.HTTP
		}
		out = append(out, ui.Member{ID: m.ID, URL: u, State: m.Node, Health: m.State, Verified: tls || m.ID == d.core.ID()})
	}
	return out
}

// Client trusts the node's CA in force (the members' certificates are
// signed by it), so a CA rotated with SIGHUP is picked up by the next
// scrape. It never follows a redirect and ignores proxy variables:
// scrapes carry the caller's token, which goes to the member asked and
// nowhere else.
func (d *dashboard) Client() *http.Client {
	var pool *x509.CertPool
	tlsStore := d.core.Config().TLS
	if tlsStore != nil {
		pool = tlsStore.ClientTLS().RootCAs
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.client != nil && d.pool == pool {
		return d.client
	}
	if d.client != nil {
		d.client.CloseIdleConnections()
	}
	tr := &http.Transport{
		Proxy:                 nil,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       time.Minute,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: 5 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	if tlsStore != nil {
		tr.TLSClientConfig = tlsStore.ClientTLS()
	}
	d.pool = pool
	d.client = &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return d.client
}

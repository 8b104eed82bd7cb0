// Package tlsconf holds a node's TLS material (its certificate and key and
// the cluster's CA) and makes the TLS configurations the node needs from
// it: one for clients of HTTP and RESP, and mutual TLS both ways between
// nodes, each side verifying the other against the CA. Reload swaps the
// material in place; handshakes after it use the new files, connections
// already open keep theirs, so a certificate rotates without dropping the
// cluster.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
)

// Files names the PEM files: the node's certificate (with any
// intermediates after it), its private key, and the CA that signs every
// node's certificate.
type Files struct {
	Cert, Key, CA string
}

// Enabled says whether any file is named.
func (f Files) Enabled() bool { return f.Cert != "" || f.Key != "" || f.CA != "" }

type material struct {
	cert *tls.Certificate
	pool *x509.CertPool
}

// Store is a node's reloadable TLS material.
type Store struct {
	files Files
	cur   atomic.Pointer[material]
}

// Load reads the three files; all are needed, since nodes verify each
// other against the CA.
func Load(f Files) (*Store, error) {
	if f.Cert == "" || f.Key == "" || f.CA == "" {
		return nil, errors.New("tls: --tls-cert, --tls-key and --tls-ca go together (nodes verify each other against the CA)")
	}
	s := &Store{files: f}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload reads the files again; on error the material in force stays.
func (s *Store) Reload() error {
	cert, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
	if err != nil {
		return fmt.Errorf("tls: certificate %s, key %s: %w", s.files.Cert, s.files.Key, err)
	}
	caPEM, err := os.ReadFile(s.files.CA)
	if err != nil {
		return fmt.Errorf("tls: CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return fmt.Errorf("tls: CA %s: no PEM certificate in it", s.files.CA)
	}
	if cert.Leaf == nil && len(cert.Certificate) > 0 {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return fmt.Errorf("tls: certificate %s: %w", s.files.Cert, err)
		}
	}
	// A node whose own certificate the CA does not sign would be refused
	// by every peer: say so at start, not as a stream of failed handshakes.
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		return fmt.Errorf("tls: certificate %s is not signed by CA %s: %w", s.files.Cert, s.files.CA, err)
	}
	s.cur.Store(&material{cert: &cert, pool: pool})
	return nil
}

// Certificate is the node's certificate in force.
func (s *Store) Certificate() *x509.Certificate { return s.cur.Load().cert.Leaf }

func (s *Store) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.cur.Load().cert, nil
}

// ServerConfig is for the client-facing listeners (HTTP, RESP): TLS 1.2
// or later with the node's certificate; clients are not asked for one
// (they prove themselves with tokens).
func (s *Store) ServerConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.getCertificate}
}

// PeerServerConfig is for the node-to-node listener: the dialing node
// must present a certificate the CA signed, checked during the handshake,
// before a byte of tally's own protocol is read.
func (s *Store) PeerServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.cur.Load()
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				Certificates: []tls.Certificate{*m.cert},
				ClientAuth:   tls.RequireAndVerifyClientCert,
				ClientCAs:    m.pool,
			}, nil
		},
	}
}

// PeerClientConfig is for dialing another node at host: it presents this
// node's certificate and verifies the peer's against the CA and host.
func (s *Store) PeerClientConfig(host string) *tls.Config {
	m := s.cur.Load()
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		ServerName:   host,
		RootCAs:      m.pool,
		Certificates: []tls.Certificate{*m.cert},
	}
}

// ClientTLS is for a client of this cluster's HTTP or RESP (tests, tools
// that run beside a node): it trusts the CA in force.
func (s *Store) ClientTLS() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: s.cur.Load().pool}
}

// ClientConfig trusts the CA in caFile (the CLI's --cacert), or the
// system's roots when caFile is empty.
func ClientConfig(caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile == "" {
		return cfg, nil
	}
	caPEM, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("CA certificate %s: no PEM certificate in it", caFile)
	}
	cfg.RootCAs = pool
	return cfg, nil
}

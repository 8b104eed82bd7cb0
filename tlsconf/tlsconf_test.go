package tlsconf

import (
	"crypto/tls"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// pair runs one mutual-TLS handshake between a server using srv and a
// client using cli, and returns each side's error.
func pair(t *testing.T, srv, cli *tls.Config) (serverErr, clientErr error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		tc := tls.Server(c, srv)
		err = tc.Handshake()
		if err == nil {
			_, err = io.Copy(io.Discard, io.LimitReader(tc, 1)) // the client's byte, or its close
		}
		done <- err
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	tc := tls.Client(c, cli)
	clientErr = tc.Handshake()
	if clientErr == nil {
		_, clientErr = tc.Write([]byte{1})
		// With TLS 1.3 a refused client certificate shows on the next read.
		if clientErr == nil {
			tc.SetReadDeadline(time.Now().Add(2 * time.Second))
			if _, err := tc.Read(make([]byte, 1)); err != nil && !isTimeout(err) && err != io.EOF {
				clientErr = err
			}
		}
	}
	c.Close()
	return <-done, clientErr
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func gen(t *testing.T, hosts ...string) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	f, err := Generate(dir, hosts, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Load(f)
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func TestPeersOfOneCAShakeHands(t *testing.T) {
	s, _ := gen(t, "127.0.0.1", "localhost")
	if serr, cerr := pair(t, s.PeerServerConfig(), s.PeerClientConfig("127.0.0.1")); serr != nil || cerr != nil {
		t.Fatalf("server %v, client %v", serr, cerr)
	}
}

func TestPeerOfAnotherCAIsRefused(t *testing.T) {
	s, _ := gen(t, "127.0.0.1")
	other, _ := gen(t, "127.0.0.1")
	// The dialer's certificate is from another CA: the server refuses it.
	if serr, _ := pair(t, s.PeerServerConfig(), other.PeerClientConfig("127.0.0.1")); serr == nil {
		t.Fatal("server accepted a client certificate from another CA")
	}
	// The server's certificate is from another CA: the dialer refuses it.
	if _, cerr := pair(t, other.PeerServerConfig(), s.PeerClientConfig("127.0.0.1")); cerr == nil {
		t.Fatal("client accepted a server certificate from another CA")
	}
	// No client certificate at all.
	noCert := &tls.Config{RootCAs: s.cur.Load().pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if serr, _ := pair(t, s.PeerServerConfig(), noCert); serr == nil {
		t.Fatal("server accepted a peer without a certificate")
	}
}

func TestPeerHostIsVerified(t *testing.T) {
	s, _ := gen(t, "10.9.9.9")
	if _, cerr := pair(t, s.PeerServerConfig(), s.PeerClientConfig("127.0.0.1")); cerr == nil {
		t.Fatal("client accepted a certificate for another host")
	}
}

func TestClientConfigTrustsTheCA(t *testing.T) {
	s, dir := gen(t, "127.0.0.1")
	cli, err := ClientConfig(filepath.Join(dir, CAFile))
	if err != nil {
		t.Fatal(err)
	}
	cli.ServerName = "127.0.0.1"
	if serr, cerr := pair(t, s.ServerConfig(), cli); serr != nil || cerr != nil {
		t.Fatalf("server %v, client %v", serr, cerr)
	}
	old := &tls.Config{MaxVersion: tls.VersionTLS11, RootCAs: cli.RootCAs, ServerName: "127.0.0.1"}
	if serr, _ := pair(t, s.ServerConfig(), old); serr == nil {
		t.Fatal("server accepted TLS 1.1")
	}
}

func TestReloadSwapsCertificateAndKeepsOldOnError(t *testing.T) {
	s, dir := gen(t, "127.0.0.1")
	before := s.Certificate().SerialNumber
	// New material from a new CA, written over the same files.
	if _, err := Generate(dir, []string{"127.0.0.1"}, time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if s.Certificate().SerialNumber.Cmp(before) == 0 {
		t.Fatal("reload kept the old certificate")
	}
	after := s.Certificate().SerialNumber
	if err := os.WriteFile(filepath.Join(dir, NodeFile), []byte("not pem"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err == nil {
		t.Fatal("a broken certificate reloaded")
	}
	if s.Certificate().SerialNumber.Cmp(after) != 0 {
		t.Fatal("a failed reload dropped the certificate in force")
	}
}

func TestLoadRefusesCertificateOfAnotherCA(t *testing.T) {
	_, a := gen(t, "127.0.0.1")
	_, b := gen(t, "127.0.0.1")
	_, err := Load(Files{Cert: filepath.Join(a, NodeFile), Key: filepath.Join(a, NodeKeyFile), CA: filepath.Join(b, CAFile)})
	if err == nil {
		t.Fatal("loaded a certificate its CA did not sign")
	}
	if _, err := Load(Files{Cert: filepath.Join(a, NodeFile)}); err == nil {
		t.Fatal("loaded without key and CA")
	}
}

package main

import (
	"bytes"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestTokenAndCACert: with --cacert an address without a scheme is https
// verified against that CA, and --token (or TALLY_TOKEN) goes with every
// request as a bearer token.
func TestTokenAndCACert(t *testing.T) {
	s := &server{}
	s.Server = httptest.NewTLSServer(http.HandlerFunc(s.handle))
	defer s.Close()
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimPrefix(s.URL, "https://")
	for _, env := range []map[string]string{
		{"TALLY_ADDR": addr, "TALLY_CACERT": ca, "TALLY_TOKEN": "from-env-0123456789"},
		{"TALLY_ADDR": addr},
	} {
		var out, errOut bytes.Buffer
		args := []string{"incr", "c"}
		want := "from-env-0123456789"
		if env["TALLY_CACERT"] == "" {
			args = append([]string{"--cacert", ca, "--token", "from-flag-0123456789"}, args...)
			want = "from-flag-0123456789"
		}
		if code := run(args, &out, &errOut, func(k string) string { return env[k] }); code != 0 {
			t.Fatalf("exit %d: %s", code, errOut.String())
		}
		s.mu.Lock()
		got := s.last.Header.Get("Authorization")
		s.mu.Unlock()
		if got != "Bearer "+want {
			t.Errorf("Authorization %q, want Bearer %s", got, want)
		}
	}
	// Without the CA the server's certificate is not trusted.
	var out, errOut bytes.Buffer
	if code := run([]string{"--addr", "https://" + addr, "--timeout", "1s", "get", "c"}, &out, &errOut, func(string) string { return "" }); code == 0 {
		t.Fatal("trusted a certificate no CA given signed")
	}
	// An unreadable CA file is an error before any request.
	if code := run([]string{"--cacert", "/nonexistent", "get", "c"}, &out, &errOut, func(string) string { return "" }); code == 0 || !strings.Contains(errOut.String(), "cacert") {
		t.Fatalf("exit %d, %q", code, errOut.String())
	}
}

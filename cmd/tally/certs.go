package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"tally/keyring"
	"tally/tlsconf"
)

// Files `certs init` writes besides tlsconf's.
const (
	gossipKeyFile = "gossip.key"
	tokensFile    = "tokens"
)

func init() {
	register(&command{
		name: "certs",
		args: "init DIR [--hosts H,...] | node DIR NAME --hosts H,...",
		summary: "init: write a CA, a node certificate for --hosts, a gossip key and admin, write and read tokens into DIR, for a secure cluster\n" +
			"node: sign one more node certificate (NAME.crt, NAME.key) with DIR's CA, for a node on other hosts",
		run: runCerts,
	})
}

func runCerts(e *env, args []string) error {
	fs := e.flagSet()
	hosts := fs.String("hosts", "localhost,127.0.0.1,::1", "comma-separated IP addresses and DNS names the node certificate is valid for (what clients and other nodes dial)")
	valid := fs.Duration("valid", 2*365*24*time.Hour, "how long the certificates are valid")
	pos, err := e.parse(fs, args)
	if err != nil {
		return err
	}
	var hostList []string
	for _, h := range strings.Split(*hosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hostList = append(hostList, h)
		}
	}
	if len(hostList) == 0 {
		return usagef("--hosts names no host")
	}
	switch {
	case len(pos) == 2 && pos[0] == "init":
		return certsInit(e, pos[1], hostList, *valid)
	case len(pos) == 3 && pos[0] == "node":
		return certsNode(e, pos[1], pos[2], hostList, *valid)
	}
	return usagef("want 'certs init DIR' or 'certs node DIR NAME'")
}

func certsInit(e *env, dir string, hosts []string, valid time.Duration) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	// Never overwrite a CA: certificates signed by it would stop working.
	if _, err := os.Stat(filepath.Join(dir, tlsconf.CAFile)); err == nil {
		return fmt.Errorf("%s already holds a CA (%s); use 'tally certs node' to sign more certificates with it, or another directory", dir, tlsconf.CAFile)
	}
	files, err := tlsconf.Generate(dir, hosts, valid)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, gossipKeyFile), []byte(keyring.New()+"\n"), 0o600); err != nil {
		return err
	}
	tokens := map[string]string{"admin": newToken(), "write": newToken(), "read": newToken()}
	body := "# TOKEN ROLE: read, write (read and count) or admin (everything)\n"
	for _, role := range []string{"admin", "write", "read"} {
		body += tokens[role] + " " + role + "\n"
	}
	if err := os.WriteFile(filepath.Join(dir, tokensFile), []byte(body), 0o600); err != nil {
		return err
	}
	abs, _ := filepath.Abs(dir)
	fmt.Fprintf(e.stdout, "wrote %s: CA, node certificate for %s, gossip key, tokens\n", abs, strings.Join(hosts, ", "))
	fmt.Fprintf(e.stdout, "start every node with:\n  --tls-cert %s --tls-key %s --tls-ca %s \\\n  --gossip-key-file %s --auth-token-file %s\n",
		files.Cert, files.Key, files.CA, filepath.Join(abs, gossipKeyFile), filepath.Join(abs, tokensFile))
	fmt.Fprintf(e.stdout, "and talk to it with:\n  export TALLY_CACERT=%s TALLY_TOKEN=%s\n", files.CA, tokens["admin"])
	fmt.Fprintf(e.stdout, "keep %s (the CA's key) off the nodes if you can: it signs new members\n", filepath.Join(abs, tlsconf.CAKeyFile))
	return nil
}

func certsNode(e *env, dir, name string, hosts []string, valid time.Duration) error {
	if name == "" || strings.ContainsAny(name, `/\`) || name == "node" || name == "ca" {
		return usagef("NAME %q: want a plain file name other than node or ca", name)
	}
	certPEM, err := os.ReadFile(filepath.Join(dir, tlsconf.CAFile))
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, tlsconf.CAKeyFile))
	if err != nil {
		return err
	}
	ca, err := tlsconf.ParseCA(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("CA in %s: %w", dir, err)
	}
	cert, key, err := ca.Issue(name, hosts, valid)
	if err != nil {
		return err
	}
	certFile, keyFile := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if _, err := os.Stat(certFile); err == nil {
		return errors.New(certFile + " exists; remove it first to replace it")
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(certFile, cert, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "wrote %s and %s for %s\n", certFile, keyFile, strings.Join(hosts, ", "))
	return nil
}

// newToken is 32 random bytes in hex.
func newToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

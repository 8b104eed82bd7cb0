package main

import (
	"log/slog"

	"tally/auth"
	"tally/keyring"
	"tally/node"
	"tally/tlsconf"
)

// security is what tallyd's security flags loaded; SIGHUP reloads it.
type security struct {
	tls        *tlsconf.Store
	tokens     *auth.Tokens
	gossipFile string
	gossipKeys [][]byte
}

func loadSecurity(files tlsconf.Files, gossipFile, tokenFile string) (*security, error) {
	s := &security{gossipFile: gossipFile}
	var err error
	if files.Enabled() {
		if s.tls, err = tlsconf.Load(files); err != nil {
			return nil, err
		}
	}
	if tokenFile != "" {
		if s.tokens, err = auth.Load(tokenFile); err != nil {
			return nil, err
		}
	}
	if gossipFile != "" {
		if s.gossipKeys, err = keyring.ReadFile(gossipFile); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// reload reads every file again. A file that fails to load leaves what
// was in force, and the node keeps running: a typo in a rotation must
// not take the cluster down.
func (s *security) reload(n *node.Node, log *slog.Logger) {
	if s.tls != nil {
		if err := s.tls.Reload(); err != nil {
			log.Error("reload failed; the certificate in force stays", "err", err)
		} else {
			log.Info("certificates reloaded", "not_after", s.tls.Certificate().NotAfter)
		}
	}
	if s.tokens != nil {
		if err := s.tokens.Reload(); err != nil {
			log.Error("reload failed; the tokens in force stay", "err", err)
		} else {
			log.Info("tokens reloaded")
		}
	}
	if s.gossipFile != "" {
		keys, err := keyring.ReadFile(s.gossipFile)
		if err == nil {
			err = n.SetGossipKeys(keys)
		}
		if err != nil {
			log.Error("gossip key reload failed; the keys in force stay, or part of the new set if applying it failed midway: fix the file and send SIGHUP again", "err", err)
		} else {
			log.Info("gossip keys reloaded", "keys", len(keys))
		}
	}
}

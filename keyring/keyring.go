// Package keyring reads and writes the gossip encryption key file (the
// node puts its keys on memberlist's keyring).
//
// The file holds base64 AES keys of 16, 24 or 32 bytes, one a line; the
// first is the primary (it encrypts what this node sends), the others
// still decrypt. Rotating a key is three reloads on every node: add the
// new key as a second line, then move it first, then drop the old one.
package keyring

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Parse reads a key file's contents; the primary key comes first.
func Parse(data []byte) ([][]byte, error) {
	var keys [][]byte
	sc := bufio.NewScanner(bytes.NewReader(data))
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		k, err := base64.StdEncoding.DecodeString(text)
		if err != nil {
			return nil, fmt.Errorf("line %d: not base64", line)
		}
		if n := len(k); n != 16 && n != 24 && n != 32 {
			return nil, fmt.Errorf("line %d: key of %d bytes; want 16, 24 or 32 (AES-128, -192, -256)", line, n)
		}
		keys = append(keys, k)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys")
	}
	return keys, nil
}

// ReadFile reads and parses the key file at path.
func ReadFile(path string) ([][]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gossip key file: %w", err)
	}
	keys, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("gossip key file %s: %w", path, err)
	}
	return keys, nil
}

// New returns a fresh 32-byte key, base64-encoded, as the file holds it.
func New() string {
	k := make([]byte, 32)
	rand.Read(k)
	return base64.StdEncoding.EncodeToString(k)
}

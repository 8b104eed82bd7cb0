package auth

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const (
	readTok  = "r-0123456789abcdef"
	writeTok = "w-0123456789abcdef"
	adminTok = "a-0123456789abcdef"
)

func TestRoles(t *testing.T) {
	tk, err := Parse([]byte("# comment\n\n" + readTok + " read\n" + writeTok + "  write\n" + adminTok + "\tadmin\n"))
	if err != nil {
		t.Fatal(err)
	}
	for tok, want := range map[string]Role{readTok: Read, writeTok: Write, adminTok: Admin, "": None, "nope-0123456789abcdef": None, readTok + "x": None, readTok[:len(readTok)-1]: None} {
		if got := tk.Role(tok); got != want {
			t.Errorf("Role(%q) = %v, want %v", tok, got, want)
		}
	}
	if !(Read < Write && Write < Admin && None < Read) {
		t.Fatal("roles must be ordered")
	}
	var off *Tokens
	if off.Enabled() || off.Role(adminTok) != None {
		t.Fatal("a nil Tokens is off and grants nothing")
	}
}

func TestParseErrorsNeverShowTheToken(t *testing.T) {
	secret := "s3cr3t-s3cr3t-s3cr3t"
	for _, in := range []string{
		secret + " superuser\n",
		secret + "\n",
		secret + " read extra\n",
		"tiny read\n",
		secret + " read\n" + secret + " write\n",
		"# nothing\n",
	} {
		_, err := Parse([]byte(in))
		if err == nil {
			t.Errorf("Parse(%q) accepted", in)
			continue
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "tiny") {
			t.Errorf("error %q shows the token", err)
		}
	}
}

func TestReloadKeepsOldTokensOnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(path, []byte(readTok+" read\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tk, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(writeTok+" write\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tk.Reload(); err != nil {
		t.Fatal(err)
	}
	if tk.Role(readTok) != None || tk.Role(writeTok) != Write {
		t.Fatal("reload did not replace the tokens")
	}
	if err := os.WriteFile(path, []byte("garbage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := tk.Reload(); err == nil {
		t.Fatal("a bad file reloaded")
	}
	if tk.Role(writeTok) != Write {
		t.Fatal("a failed reload dropped the tokens in force")
	}
}

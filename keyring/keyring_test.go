package keyring

import (
	"bytes"
	"encoding/base64"
	"testing"
)

func TestParse(t *testing.T) {
	a, b := New(), base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 16))
	keys, err := Parse([]byte("# primary first\n" + a + "\n\n" + b + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || len(keys[0]) != 32 || len(keys[1]) != 16 {
		t.Fatalf("keys %d: %v", len(keys), keys)
	}
	for _, bad := range []string{"", "# none\n", "not base64!\n", base64.StdEncoding.EncodeToString([]byte("short")) + "\n"} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
}

func TestApplyRotates(t *testing.T) {
	k1, _ := Parse([]byte(New()))
	k2, _ := Parse([]byte(New()))
	kr, err := Keyring(k1)
	if err != nil {
		t.Fatal(err)
	}
	// Step 1: the new key joins as a secondary.
	if err := Apply(kr, [][]byte{k1[0], k2[0]}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kr.GetPrimaryKey(), k1[0]) || len(kr.GetKeys()) != 2 {
		t.Fatal("step 1: want k1 primary, two keys")
	}
	// Step 2: the new key becomes primary.
	if err := Apply(kr, [][]byte{k2[0], k1[0]}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kr.GetPrimaryKey(), k2[0]) || len(kr.GetKeys()) != 2 {
		t.Fatal("step 2: want k2 primary, two keys")
	}
	// Step 3: the old key goes.
	if err := Apply(kr, [][]byte{k2[0]}); err != nil {
		t.Fatal(err)
	}
	if got := kr.GetKeys(); len(got) != 1 || !bytes.Equal(got[0], k2[0]) {
		t.Fatal("step 3: want only k2")
	}
}

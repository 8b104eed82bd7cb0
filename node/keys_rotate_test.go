package node

import (
	"bytes"
	"testing"

	"github.com/hashicorp/memberlist"

	"tally/keyring"
)

func TestApplyRotates(t *testing.T) {
	k1, _ := keyring.Parse([]byte(keyring.New()))
	k2, _ := keyring.Parse([]byte(keyring.New()))
	kr, err := memberlist.NewKeyring(nil, k1[0])
	if err != nil {
		t.Fatal(err)
	}
	// Step 1: the new key joins as a secondary.
	if err := applyKeys(kr, [][]byte{k1[0], k2[0]}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kr.GetPrimaryKey(), k1[0]) || len(kr.GetKeys()) != 2 {
		t.Fatal("step 1: want k1 primary, two keys")
	}
	// Step 2: the new key becomes primary.
	if err := applyKeys(kr, [][]byte{k2[0], k1[0]}); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kr.GetPrimaryKey(), k2[0]) || len(kr.GetKeys()) != 2 {
		t.Fatal("step 2: want k2 primary, two keys")
	}
	// Step 3: the old key goes.
	if err := applyKeys(kr, [][]byte{k2[0]}); err != nil {
		t.Fatal(err)
	}
	if got := kr.GetKeys(); len(got) != 1 || !bytes.Equal(got[0], k2[0]) {
		t.Fatal("step 3: want only k2")
	}
}

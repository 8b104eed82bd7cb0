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

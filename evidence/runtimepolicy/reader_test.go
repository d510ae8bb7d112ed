package runtimepolicy

import (
	"bytes"
	"os"
	"testing"

	"github.com/ratatouille/rat/evidence/ima"
)

// mustLog reads an ascii IMA log with evidence/ima's parser.
func mustLog(t testing.TB, path string) []ima.Entry {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	es, err := ima.ParseASCII(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return es
}

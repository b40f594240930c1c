package artifact_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/local"
)

func TestValidateKey(t *testing.T) {
	long := strings.Repeat("a/", artifact.MaxKeyLen/2-1) + "bc" // exactly MaxKeyLen bytes
	for key, ok := range map[string]bool{
		"a": true, "a/b/c.pgdump": true, "a/.b/..c/d.btfu-tmp": true, "ünï/ключ with space": true, long: true,
		"": false, "/a": false, "a/": false, "a//b": false, ".": false, "a/./b": false, "..": false,
		"a/../b": false, `a\b`: false, "a\x00": false, "\xff\xfe": false, long + "x": false,
		".btfu-tmp": false, "a/.btfu-tmp-1/b": false, ".btfu-tmpx": false,
	} {
		if err := artifact.ValidateKey(key); (err == nil) != ok {
			t.Errorf("ValidateKey(%.40q) = %v, want ok=%t", key, err, ok)
		}
	}
	for prefix, ok := range map[string]bool{
		"": true, "a": true, "a/": true, "a/b": true, "a/.": true, "a/..": true,
		"/": false, "/a": false, "a//": false, "../": false, "a/./": false, `a\`: false,
	} {
		if err := artifact.ValidatePrefix(prefix); (err == nil) != ok {
			t.Errorf("ValidatePrefix(%q) = %v, want ok=%t", prefix, err, ok)
		}
	}
}

type failingReader struct{}

func (failingReader) Read([]byte) (int, error) { return 0, errors.New("source died") }

func TestPutHashedReportsPutErrors(t *testing.T) {
	s, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	n, sum, err := artifact.PutHashed(context.Background(), s, "k", failingReader{})
	if err == nil || n != 0 || sum != "" {
		t.Errorf("PutHashed = %d, %q, %v; want the Put error", n, sum, err)
	}
}

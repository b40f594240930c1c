package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAppendSourceKeepsTheFileAndRefusesBadEdits(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	orig := "# my notes\n[storage]\npath = \"./data\"   # keep\n\n[[source]]\nname = \"one\"\ndsn = \"postgres://a@h/db\"\n# trailing comment"
	if err := os.WriteFile(path, []byte(orig), 0o640); err != nil {
		t.Fatal(err)
	}
	cfg, err := AppendSource(path, SourceBlock{Name: "two", DSN: "postgres://b@h/db2", ExcludeTables: []string{"public.sessions"}, Schedule: "0 4 * * *"})
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Sources) != 2 || cfg.Sources[1].Name != "two" || cfg.Sources[1].Schedule != "0 4 * * *" || cfg.Sources[1].ExcludeTables[0] != "public.sessions" {
		t.Fatalf("new config: %+v", cfg.Sources)
	}
	got, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(got), orig+"\n") {
		t.Fatalf("existing bytes changed:\n%s", got)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v", fi.Mode())
	}
	for _, bad := range []SourceBlock{
		{Name: "two", DSN: "postgres://c@h/db3"},                         // duplicate
		{Name: "three", DSN: "postgres://c@h/db3", Schedule: "every 5m"}, // invalid
	} {
		if _, err := AppendSource(path, bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
		if now, _ := os.ReadFile(path); string(now) != string(got) {
			t.Fatalf("a refused edit changed the file:\n%s", now)
		}
	}
}

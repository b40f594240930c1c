package cli_test

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

// `btfu help config` gives every key config.toml.example documents, in its
// table, with its default and meaning.
func TestHelpConfigGivesEveryKeyWithItsMeaning(t *testing.T) {
	b, err := os.ReadFile("../config.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	r := btfu(t, t.TempDir(), "help", "config")
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.all())
	}
	// The help, cut into tables: "[storage.s3]" -> its lines.
	tables := map[string]string{}
	headers := regexp.MustCompile(`(?m)^\[\[?[a-z0-9_.]+\]\]?$`)
	idx := headers.FindAllStringIndex(r.stdout, -1)
	for i, loc := range idx {
		end := len(r.stdout)
		if i+1 < len(idx) {
			end = idx[i+1][0]
		}
		tables[r.stdout[loc[0]:loc[1]]] = r.stdout[loc[1]:end]
	}
	key := regexp.MustCompile(`^(?:# )?([a-z_0-9]+) = (.+?)(?:\s+#\s*(.*))?$`)
	table, n := "", 0
	for _, line := range strings.Split(string(b), "\n") {
		if headers.MatchString(strings.TrimSpace(line)) {
			table = strings.TrimSpace(line)
			if _, ok := tables[table]; !ok {
				t.Errorf("help config has no %s", table)
			}
			continue
		}
		m := key.FindStringSubmatch(line)
		if m == nil || table == "" {
			continue
		}
		n++
		want := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(m[1]+" = "+m[2]) + `\s*` + regexp.QuoteMeta(m[3]) + `$`)
		if !want.MatchString(tables[table]) {
			t.Errorf("help config, %s: no line for %s = %s with %q:\n%s", table, m[1], m[2], m[3], tables[table])
		}
	}
	if n < 50 {
		t.Fatalf("only %d keys found in config.toml.example", n)
	}
	// A meaning that goes on over lines keeps its lines.
	if !strings.Contains(r.stdout, "source's disk never fills") {
		t.Errorf("help config cuts max_retained_wal's meaning:\n%s", r.stdout)
	}
}

// Every exit code btfu's commands use is explained by `btfu help
// exit-codes`.
func TestHelpExitCodesExplainsEveryCode(t *testing.T) {
	codes := map[string]bool{"0": true, "2": true} // success; usageErr
	sources, _ := filepath.Glob("*.go")
	for _, f := range sources {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, _ := os.ReadFile(f)
		for _, m := range regexp.MustCompile(`ExitError\{Code: (\d+)`).FindAllStringSubmatch(string(b), -1) {
			codes[m[1]] = true
		}
	}
	r := btfu(t, t.TempDir(), "help", "exit-codes")
	if r.code != 0 {
		t.Fatalf("exit %d:\n%s", r.code, r.all())
	}
	var list []string
	for c := range codes {
		list = append(list, c)
		if !regexp.MustCompile(`(?m)^  ` + c + `  \S`).MatchString(r.stdout) {
			t.Errorf("help exit-codes does not explain %s:\n%s", c, r.stdout)
		}
	}
	sort.Strings(list)
	if len(list) < 3 {
		t.Fatalf("codes found in cli: %v", list)
	}
}

// `btfu help` lists the topics; `btfu help COMMAND` is that command's
// --help; an unknown topic is a usage error naming the topics.
func TestHelpTopicsAndCommands(t *testing.T) {
	dir := t.TempDir()
	if r := btfu(t, dir, "help"); r.code != 0 || !strings.Contains(r.stdout, "help [COMMAND|TOPIC]") || !strings.Contains(r.stdout, "exit-codes") {
		t.Errorf("help: exit %d\n%s", r.code, r.all())
	}
	if r := btfu(t, dir, "help", "restore"); r.code != 0 || !strings.HasPrefix(r.stdout, "Usage: btfu restore") {
		t.Errorf("help restore: exit %d\n%s", r.code, r.all())
	}
	if r := btfu(t, dir, "help", "--help"); r.code != 0 || !strings.Contains(r.stdout, "Topics:") {
		t.Errorf("help --help: exit %d\n%s", r.code, r.all())
	}
	if r := btfu(t, dir, "help", "keys"); r.code != 2 || !strings.Contains(r.stderr, "config, exit-codes") {
		t.Errorf("help keys: exit %d, want 2 naming the topics\n%s", r.code, r.all())
	}
}

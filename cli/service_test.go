package cli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// contrib/systemd/btfu.service runs btfu with flags it has: its ExecStart,
// pointed at a config without sources, gets as far as reading the config
// (not a usage error), and the unit keeps the settings README describes.
func TestSystemdUnitRunsBtfuHeadless(t *testing.T) {
	b, err := os.ReadFile("../contrib/systemd/btfu.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := string(b)
	settings := map[string]string{}
	for _, line := range strings.Split(unit, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			settings[k] = v
		}
	}
	for k, want := range map[string]string{
		"User":             "btfu",
		"ProtectSystem":    "strict",
		"NoNewPrivileges":  "yes",
		"StateDirectory":   "btfu",
		"WorkingDirectory": "/var/lib/btfu",
		"ExecReload":       "/bin/kill -HUP $MAINPID",
		"Restart":          "on-failure",
		"ExecStart":        "/usr/local/bin/btfu --no-tui --config /etc/btfu/config.toml",
	} {
		if settings[k] != want {
			t.Errorf("%s=%q, want %q", k, settings[k], want)
		}
	}
	args := strings.Fields(settings["ExecStart"])[1:]
	dir := writeConfig(t, "[log]\nlevel = \"info\"\n")
	for i, a := range args {
		if a == "/etc/btfu/config.toml" {
			args[i] = filepath.Join(dir, "config.toml")
		}
	}
	r := btfu(t, dir, args...)
	if r.code != 1 || !strings.Contains(r.stderr, "has no [[source]]") {
		t.Fatalf("btfu %s: exit %d, want 1 saying the config has no source:\n%s", strings.Join(args, " "), r.code, r.all())
	}
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btfu/btfu/redact"
)

const apiSource = "[[source]]\nname = \"a\"\ndsn = \"postgres://u@h/d\"\n"

func TestAPIProblemsNameTheKey(t *testing.T) {
	cases := []struct{ text, want string }{
		{"[api]\nlisten = \"0.0.0.0:9187\"", `api.token: api.listen = "0.0.0.0:9187" accepts connections from other machines; set token (or token_file)`},
		{"[api]\nlisten = \":9187\"", `api.token: api.listen = ":9187" accepts connections from other machines`},
		{"[api]\nlisten = \"9187\"", `api.listen: "9187" is not host:port`},
		{"[api]\nlisten = \"0.0.0.0:9187\"\ntoken = \"short\"", `api.token: the token is too short`},
		{"[api]\ntoken_file = \"/nonexistent/btfu-token\"", `api.token_file: cannot read /nonexistent/btfu-token`},
		{"[api]\ntoken = \"${BTFU_SURELY_UNSET_TOKEN}\"", `api.token: environment variable BTFU_SURELY_UNSET_TOKEN is not set`},
		{"[api]\nlisen = \"127.0.0.1:9187\"", `api.lisen: unknown key; did you mean "api.listen"?`},
	}
	for _, c := range cases {
		_, err := parse(t, c.text+"\n"+apiSource)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant it to contain %s", c.text, err, c.want)
		}
	}
	for _, ok := range []string{
		"[api]\nlisten = \"127.0.0.1:9187\"",
		"[api]\nlisten = \"[::1]:9187\"",
		"[api]\nlisten = \"localhost:9187\"",
		"[api]\nsocket = \"off\"",
	} {
		if _, err := parse(t, ok+"\n"+apiSource); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// The token comes from the environment or a file like other secrets, and
// is masked wherever redact applies.
func TestAPITokenFromEnvAndFileIsMasked(t *testing.T) {
	t.Setenv("BTFU_TEST_API_TOKEN", "env-token-0123456789abcdef")
	c, err := parse(t, "[api]\nlisten = \"0.0.0.0:9187\"\ntoken = \"${BTFU_TEST_API_TOKEN}\"\n"+apiSource)
	if err != nil {
		t.Fatal(err)
	}
	if c.API.Token != "env-token-0123456789abcdef" {
		t.Fatalf("token %q", c.API.Token)
	}
	if got := redact.String("Bearer env-token-0123456789abcdef"); strings.Contains(got, "env-token") {
		t.Fatalf("token not registered with redact: %s", got)
	}
	shown, err := c.Show()
	if err != nil || strings.Contains(shown, "env-token") || !strings.Contains(shown, `token = "xxxxx"`) {
		t.Fatalf("config show: %v\n%s", err, shown)
	}

	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte("file-token-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("BTFU_TEST_TOKEN_DIR", filepath.Dir(file))
	c, err = parse(t, "[api]\nlisten = \"0.0.0.0:9187\"\ntoken_file = \"${BTFU_TEST_TOKEN_DIR}/token\"\n"+apiSource)
	if err != nil {
		t.Fatal(err)
	}
	if c.API.Token != "file-token-0123456789abcdef" {
		t.Fatalf("token from file %q", c.API.Token)
	}
	shown, err = c.Show()
	if err != nil || strings.Contains(shown, "file-token") || !strings.Contains(shown, "token_file = ") {
		t.Fatalf("config show: %v\n%s", err, shown)
	}
	if _, err := parse(t, "[api]\ntoken = \"a-token-0123456789abcdef\"\ntoken_file = \""+file+"\"\n"+apiSource); err == nil || !strings.Contains(err.Error(), "api.token_file: set either api.token or token_file") {
		t.Fatalf("both token and token_file: %v", err)
	}
}

func TestSocketPath(t *testing.T) {
	for _, c := range []struct{ text, want string }{
		{"", "btfu.sock"},
		{"[metadata]\npath = \"/var/lib/btfu/prod.db\"", "/var/lib/btfu/prod.sock"},
		{"[metadata]\npath = \"/var/lib/btfu/meta\"", "/var/lib/btfu/meta.sock"},
		{"[metadata]\ndriver = \"postgres\"\ndsn = \"postgres://u@h/meta\"", "/etc/btfu/btfu.sock"},
		{"[api]\nsocket = \"/run/btfu/ctl.sock\"", "/run/btfu/ctl.sock"},
		{"[api]\nsocket = \"off\"", ""},
	} {
		cfg, err := Parse("/etc/btfu/config.toml", []byte(c.text+"\n"+apiSource))
		if err != nil {
			t.Fatalf("%q: %v", c.text, err)
		}
		if got := cfg.SocketPath(); got != c.want {
			t.Errorf("%q: socket %q, want %q", c.text, got, c.want)
		}
	}
}

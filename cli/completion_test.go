package cli_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// commandsAndFlags reads btfu's commands from --help and each command's
// flags from its own --help: what a completion script must offer.
func commandsAndFlags(t *testing.T) map[string][]string {
	t.Helper()
	r := btfu(t, t.TempDir(), "--help")
	_, list, ok := strings.Cut(r.stdout, "\nCommands:\n")
	if !ok {
		t.Fatalf("--help lists no commands:\n%s", r.all())
	}
	list, _, _ = strings.Cut(list, "\n\n")
	flagLine := regexp.MustCompile(`(?m)^  -([a-z][a-z-]*)`)
	out := map[string][]string{}
	for _, l := range strings.Split(list, "\n") {
		name := strings.Fields(l)[0]
		h := btfu(t, t.TempDir(), name, "--help")
		for _, m := range flagLine.FindAllStringSubmatch(h.stdout, -1) {
			out[name] = append(out[name], m[1])
		}
		if len(out[name]) == 0 {
			t.Fatalf("%s --help shows no flags:\n%s", name, h.all())
		}
	}
	if len(out) < 10 {
		t.Fatalf("only %d commands in --help:\n%s", len(out), r.stdout)
	}
	return out
}

// Every command and every flag btfu has is in each shell's script: they
// are generated from the command table, so a new command or flag is
// completed without anyone touching the scripts.
func TestCompletionScriptsOfferEveryCommandAndFlag(t *testing.T) {
	cmds := commandsAndFlags(t)
	for shell, pats := range map[string]struct{ command, flag string }{
		"bash": {`(?m)^\t%s\) words=`, `--%s[ ']`},
		"zsh":  {`(?m)^\t%s\)$`, `'--%s:`},
		"fish": {`-n __fish_use_subcommand -a %s -d `, `-l %s[ \n]`},
	} {
		r := btfu(t, t.TempDir(), "completion", shell)
		if r.code != 0 || r.stdout == "" {
			t.Fatalf("completion %s: exit %d\n%s", shell, r.code, r.all())
		}
		for name, flags := range cmds {
			if !regexp.MustCompile(fmt.Sprintf(pats.command, regexp.QuoteMeta(name))).MatchString(r.stdout) {
				t.Errorf("%s script does not complete the command %s", shell, name)
			}
			for _, f := range flags {
				if !regexp.MustCompile(fmt.Sprintf(pats.flag, regexp.QuoteMeta(f))).MatchString(r.stdout) {
					t.Errorf("%s script does not complete %s --%s", shell, name, f)
				}
			}
		}
	}
	if r := btfu(t, t.TempDir(), "completion", "tcsh"); r.code != 2 || !strings.Contains(r.stderr, "bash, zsh or fish") {
		t.Errorf("completion tcsh: exit %d, want 2 naming the shells:\n%s", r.code, r.all())
	}
}

// The bash script completes in bash: commands, a command's flags, config's
// words, and files after --config.
func TestBashCompletionCompletes(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "btfu.bash")
	r := btfu(t, dir, "completion", "bash")
	if err := os.WriteFile(script, []byte(r.stdout), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "prod.toml"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for line, want := range map[string]string{
		"btfu re":                 "register restore resume retention",
		"btfu restore --t":        "--target --time",
		"btfu --config x.toml st": "status",
		"btfu config ":            "show check",
		"btfu completion ":        "bash zsh fish",
		"btfu help exit":          "exit-codes",
		"btfu --config pro":       "prod.toml",
		"btfu restore --target ":  "",
	} {
		words := strings.Split(line, " ")
		cmd := exec.Command("bash", "--norc", "-c", `source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _btfu; echo "${COMPREPLY[*]}"`, "bash", script)
		cmd.Args = append(cmd.Args, words...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", line, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("completing %q: %q, want %q", line, got, want)
		}
	}
}

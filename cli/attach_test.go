package cli_test

import (
	"strings"
	"testing"
)

// attach is a command like the others: listed by --help, explained by
// help attach, completed by every shell's script.
func TestAttachIsListedHelpedAndCompleted(t *testing.T) {
	dir := t.TempDir()
	if r := btfu(t, dir, "--help"); r.code != 0 || !strings.Contains(r.stdout, "  attach ") {
		t.Fatalf("--help does not list attach: exit %d\n%s", r.code, r.all())
	}
	if r := btfu(t, dir, "help", "attach"); r.code != 0 || !strings.Contains(r.stdout, "quitting leaves it running") {
		t.Fatalf("help attach: exit %d\n%s", r.code, r.all())
	}
	for _, sh := range []string{"bash", "zsh", "fish"} {
		if r := btfu(t, dir, "completion", sh); r.code != 0 || !strings.Contains(r.stdout, "attach") {
			t.Errorf("completion %s does not complete attach: exit %d\n%s", sh, r.code, r.all())
		}
	}
	if r := btfu(t, dir, "attach", "now"); r.code != 2 {
		t.Errorf("attach with an argument: exit %d, want 2\n%s", r.code, r.all())
	}
}

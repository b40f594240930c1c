package cli_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/btfu/btfu/internal/pgtest"
)

// tmuxSession runs the real binary in a detached tmux session on a
// private server socket, so the test drives the TUI the way a user does:
// keys in with send-keys, the screen out with capture-pane.
type tmuxSession struct {
	t    *testing.T
	sock string
	name string
}

func startTmux(t *testing.T, dir string, width, height int, env []string, args ...string) *tmuxSession {
	t.Helper()
	// The shell keeps the pane open after btfu exits, so its exit status
	// and last words stay on the screen for the assertions.
	cmdline := "cd " + shellQuote(dir) + " && " + btfuCommand(args...)
	cmdline += "; echo \"btfu exited with status $?\"; sleep 600"
	return startTmuxShell(t, width, height, env, cmdline)
}

// btfuCommand is the shell command running the binary with args.
func btfuCommand(args ...string) string {
	cmdline := shellQuote(bin)
	for _, a := range args {
		cmdline += " " + shellQuote(a)
	}
	return cmdline
}

// startTmuxShell runs cmdline with sh in a new session of a private tmux
// server.
func startTmuxShell(t *testing.T, width, height int, env []string, cmdline string) *tmuxSession {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatalf("tmux not found (%v): the TUI tests drive btfu under tmux and fail without it; install it "+
			"(Debian/Ubuntu: apt-get install tmux; Fedora: dnf install tmux; macOS: brew install tmux)", err)
	}
	s := &tmuxSession{t: t, sock: fmt.Sprintf("btfu-test-%d-%d", os.Getpid(), time.Now().UnixNano()), name: "btfu"}
	full := []string{"-L", s.sock, "-f", "/dev/null", "new-session", "-d", "-s", s.name,
		"-x", fmt.Sprint(width), "-y", fmt.Sprint(height)}
	for _, e := range env {
		full = append(full, "-e", e)
	}
	full = append(full, "sh", "-c", cmdline)
	cmd := exec.Command("tmux", full...)
	cmd.Env = append(os.Environ(), "BTFU_CONFIG=", "TERM=xterm-256color")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tmux new-session: %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("tmux", "-L", s.sock, "kill-server").Run() })
	return s
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func (s *tmuxSession) tmux(args ...string) string {
	s.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-L", s.sock}, args...)...).CombinedOutput()
	if err != nil {
		s.t.Fatalf("tmux %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// screen is the visible pane as text; escapes keeps the SGR sequences.
func (s *tmuxSession) screen(escapes bool) string {
	s.t.Helper()
	if escapes {
		return s.tmux("capture-pane", "-p", "-e", "-t", s.name)
	}
	return s.tmux("capture-pane", "-p", "-t", s.name)
}

// typeText sends literal text; keys sends named keys (Enter, Escape, Tab).
func (s *tmuxSession) typeText(text string) {
	s.t.Helper()
	s.tmux("send-keys", "-t", s.name, "-l", text)
}
func (s *tmuxSession) keys(keys ...string) {
	s.t.Helper()
	s.tmux(append([]string{"send-keys", "-t", s.name}, keys...)...)
}

// waitFor polls the screen until it matches re, failing with the screen.
func (s *tmuxSession) waitFor(re string, timeout time.Duration) string {
	s.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		scr := s.screen(false)
		if rx.MatchString(scr) {
			return scr
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("the screen never showed %q in %s; it shows:\n%s", re, timeout, scr)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// A user who has never seen btfu restores a database to an earlier
// point with the wizard alone, then registers a second database with the
// form: the real binary under tmux, keys sent as a user types them, the
// result checked on the screen, in the target database and in config.toml.
func TestTUIWizardRestoresAndRegisterAddsASourceUnderTmux(t *testing.T) {
	db := source.CreateDB(t)
	other := source.CreateDB(t)
	for _, d := range []string{db, other} {
		t.Cleanup(func() {
			source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 's_%s%%' AND NOT active", d))
		})
	}
	source.Exec(t, db, `CREATE TABLE orders(id int PRIMARY KEY, customer text NOT NULL, total numeric(10,2));
		INSERT INTO orders SELECT g, 'c' || g, g * 1.5 FROM generate_series(1, 40) g`)
	source.Exec(t, other, `CREATE TABLE notes(id int PRIMARY KEY, body text); INSERT INTO notes VALUES (1, 'hello')`)
	dir := writeConfig(t, fmt.Sprintf(`[log]
file = "btfu.log"
[[source]]
name = "shop"
dsn = %q
slot = "s_%s"
`, source.DSN(db), db))
	cfgPath := filepath.Join(dir, "config.toml")
	before, _ := os.ReadFile(cfgPath)

	s := startTmux(t, dir, 120, 40, nil, "--config", cfgPath)
	s.waitFor(`shop\s+streaming`, 60*time.Second)
	// The first base backup is taken at start.
	deadline := time.Now().Add(90 * time.Second)
	for btfu(t, dir, "restore", "--latest", "--dry-run").code != 0 {
		if time.Now().After(deadline) {
			t.Fatal("no base backup")
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Rows at the point to restore to, then changes after it.
	source.Exec(t, db, "UPDATE orders SET total = total + 100 WHERE id <= 10; DELETE FROM orders WHERE id > 35; INSERT INTO orders VALUES (41, 'late', 1)")
	time.Sleep(200 * time.Millisecond)
	point := time.Now().UTC()
	want := queryIDs(t, db, "SELECT id FROM orders")
	wantSum := pgtest.QueryValue[string](t, source, db, "SELECT sum(total)::text FROM orders")
	time.Sleep(200 * time.Millisecond)
	source.Exec(t, db, "DELETE FROM orders WHERE id <= 20; UPDATE orders SET customer = 'after'")
	after := source.CurrentLSN(t)
	// Coverage must pass the point before the wizard can plan it.
	deadline = time.Now().Add(60 * time.Second)
	for btfu(t, dir, "restore", "--lsn", after.String(), "--dry-run").code != 0 {
		if time.Now().After(deadline) {
			t.Fatal("coverage never reached the changes after the point")
		}
		time.Sleep(200 * time.Millisecond)
	}
	target := source.CreateDB(t)

	s.keys("R")
	s.waitFor(`Restore wizard`, 10*time.Second)
	s.typeText("yesterday at noon")
	s.keys("Enter")
	s.waitFor(`! "yesterday at noon" is not a time`, 10*time.Second)
	s.keys("C-u")
	s.typeText(point.Format(time.RFC3339Nano))
	s.keys("Enter")
	s.waitFor(`target database:`, 10*time.Second)
	// The source itself is refused before anything is written.
	s.typeText(source.DSN(db))
	s.keys("Enter")
	s.waitFor(`! the target is the source itself`, 20*time.Second)
	s.keys("C-u")
	s.typeText(source.DSN(target))
	s.keys("Enter")
	s.waitFor(`base backup\s+\S+`, 20*time.Second)
	s.keys("Enter")
	s.waitFor(`type restore to go on`, 10*time.Second)
	s.typeText("restore")
	s.keys("Enter")
	done := s.waitFor(`Restore finished|Restore failed`, 2*time.Minute)
	if !strings.Contains(done, "Restore finished") {
		t.Fatalf("the wizard's restore failed:\n%s", done)
	}
	if got := queryIDs(t, target, "SELECT id FROM orders"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored ids %v, the source held %v at the point", got, want)
	}
	if got := pgtest.QueryValue[string](t, source, target, "SELECT sum(total)::text FROM orders"); got != wantSum {
		t.Fatalf("restored sum(total) %v, the source held %v", got, wantSum)
	}
	s.keys("Enter")
	s.waitFor(`restored shop into`, 10*time.Second)

	// Register the second database with the form.
	s.keys("n")
	s.waitFor(`name:`, 10*time.Second)
	s.typeText("notes")
	s.keys("Tab")
	s.typeText(source.DSN(other))
	s.keys("Tab", "Tab")
	s.typeText("off")
	s.keys("Enter")
	s.waitFor(`add to config.toml`, 30*time.Second)
	s.keys("y")
	s.waitFor(`notes\s+streaming`, 60*time.Second)
	cfg, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(cfg), string(before)) || !strings.Contains(string(cfg[len(before):]), `name = "notes"`) {
		t.Fatalf("config.toml after registering: the old bytes must stay and a [[source]] for notes follow:\n%s", cfg)
	}

	// q during a backup asks first; after the answer everything stops.
	s.keys("q")
	scr := s.waitFor(`btfu exited with status|\(y/n\)`, 20*time.Second)
	if strings.Contains(scr, "(y/n)") {
		s.keys("y")
	}
	s.waitFor(`btfu exited with status 0`, 30*time.Second)
}

// With NO_COLOR the TUI draws without colour: the same screen under tmux
// carries no colour escapes, while without it the dashboard is coloured.
func TestTUIHonoursNoColor(t *testing.T) {
	colour := regexp.MustCompile(`\x1b\[[0-9;]*(3[0-7]|38|4[0-7]|48|9[0-7]|10[0-7])[;m]`)
	for _, tc := range []struct {
		env        []string
		wantColour bool
	}{{nil, true}, {[]string{"NO_COLOR=1"}, false}} {
		db := source.CreateDB(t)
		t.Cleanup(func() {
			source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 's_%s%%' AND NOT active", db))
		})
		source.Exec(t, db, "CREATE TABLE t(id int PRIMARY KEY)")
		dir := writeConfig(t, fmt.Sprintf("[log]\nfile = \"btfu.log\"\n[[source]]\nname = \"plain\"\ndsn = %q\nslot = \"s_%s\"\nschedule = \"off\"\n", source.DSN(db), db))
		s := startTmux(t, dir, 80, 24, tc.env, "--config", filepath.Join(dir, "config.toml"))
		s.waitFor(`plain\s+streaming`, 60*time.Second)
		scr := s.screen(true)
		if got := colour.MatchString(scr); got != tc.wantColour {
			t.Errorf("env %v: colour escapes present = %v, want %v; screen:\n%q", tc.env, got, tc.wantColour, scr)
		}
		s.keys("q")
		s.waitFor(`btfu exited with status 0`, 30*time.Second)
	}
}

// A TUI btfu whose terminal goes away (tmux killed, an SSH connection
// dropped) or that gets SIGHUP stops as on SIGTERM: it stores the open
// segment, acknowledges it and exits 0, instead of running on without a
// screen. The shell around it ignores SIGHUP so that it outlives the
// terminal and records btfu's exit status.
func TestTUIStopsWhenItsTerminalHangsUp(t *testing.T) {
	for _, tc := range []struct {
		name   string
		hangUp func(s *tmuxSession, btfuPid int)
	}{
		{"tmux killed", func(s *tmuxSession, _ int) { s.tmux("kill-server") }},
		{"SIGHUP", func(_ *tmuxSession, pid int) { syscall.Kill(pid, syscall.SIGHUP) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db := source.CreateDB(t)
			t.Cleanup(func() {
				source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 's_%s' AND NOT active", db))
			})
			source.Exec(t, db, "CREATE TABLE t(id int PRIMARY KEY)")
			// Segments rotate after an hour: what the last commit is in
			// stays open until btfu stops.
			dir := writeConfig(t, fmt.Sprintf("[log]\nfile = \"btfu.log\"\n[[source]]\nname = \"shop\"\ndsn = %q\nslot = \"s_%s\"\nschedule = \"off\"\nsegment_max_age = \"1h\"\n", source.DSN(db), db))
			statusFile := filepath.Join(dir, "exit-status")
			s := startTmuxShell(t, 80, 24, nil, "trap '' HUP; cd "+shellQuote(dir)+" && "+btfuCommand("--config", filepath.Join(dir, "config.toml"))+"; echo $? > exit-status")
			s.waitFor(`shop\s+streaming`, 60*time.Second)
			pane, err := strconv.Atoi(strings.TrimSpace(s.tmux("display-message", "-p", "-t", s.name, "#{pane_pid}")))
			if err != nil {
				t.Fatal(err)
			}
			children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pane, pane))
			if err != nil {
				t.Fatal(err)
			}
			pid, err := strconv.Atoi(strings.TrimSpace(string(children)))
			if err != nil {
				t.Fatalf("btfu's pid among the shell's children %q: %v", children, err)
			}

			source.Exec(t, db, "INSERT INTO t SELECT generate_series(1, 10)")
			last := source.CurrentLSN(t)
			// The commit has reached the open segment once btfu counts a
			// transaction (nothing else is written to the source).
			deadline := time.Now().Add(30 * time.Second)
			for {
				var st struct {
					Sources []struct {
						TxPerSec float64 `json:"tx_per_sec"`
					} `json:"sources"`
				}
				r := btfu(t, dir, "status", "--json")
				if json.Unmarshal([]byte(r.stdout), &st) == nil && len(st.Sources) == 1 && st.Sources[0].TxPerSec > 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("btfu never received the commit:\n%s", r.all())
				}
				time.Sleep(200 * time.Millisecond)
			}
			if r := btfu(t, dir, "restore", "--lsn", last.String(), "--dry-run"); r.code == 0 {
				t.Fatalf("coverage reaches the last commit before the hang-up: the segment was not open\n%s", r.all())
			}

			hungUp := time.Now()
			tc.hangUp(s, pid)
			deadline = hungUp.Add(10 * time.Second)
			for {
				b, err := os.ReadFile(statusFile)
				if err == nil && strings.HasSuffix(string(b), "\n") {
					if code := strings.TrimSpace(string(b)); code != "0" {
						log, _ := os.ReadFile(filepath.Join(dir, "btfu.log"))
						t.Fatalf("btfu exited with status %s after the hang-up; log:\n%s", code, log)
					}
					t.Logf("btfu exited 0 %s after the hang-up", time.Since(hungUp).Round(10*time.Millisecond))
					break
				}
				if time.Now().After(deadline) {
					syscall.Kill(pid, syscall.SIGKILL)
					log, _ := os.ReadFile(filepath.Join(dir, "btfu.log"))
					t.Fatalf("btfu still runs 10s after the hang-up; log:\n%s", log)
				}
				time.Sleep(100 * time.Millisecond)
			}
			if r := btfu(t, dir, "restore", "--lsn", last.String(), "--dry-run"); r.code != 0 {
				t.Fatalf("coverage does not reach the last commit before the hang-up: the open segment was not stored\n%s", r.all())
			}
		})
	}
}

// panePid is the pid of the process the pane's shell runs (btfu).
func (s *tmuxSession) panePid() int {
	s.t.Helper()
	pane, err := strconv.Atoi(strings.TrimSpace(s.tmux("display-message", "-p", "-t", s.name, "#{pane_pid}")))
	if err != nil {
		s.t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pane, pane))
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(children))); err == nil && perr == nil {
			return pid
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no child of the pane's shell %d: %q %v", pane, children, err)
		}
	}
}

// An operator finds btfu running headless (as under systemd), types btfu
// in another terminal at 80x24: the TUI attaches to the running engine
// and names it, shows the source streaming, takes a base backup, restores
// with the wizard (the restore runs in the engine), registers a second
// source with the form (the engine appends it to its config.toml), and
// quits; the engine runs on, still streaming.
func TestTUIAttachesToARunningBtfuUnderTmux(t *testing.T) {
	db := source.CreateDB(t)
	t.Cleanup(func() {
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 's_%s%%' AND NOT active", db))
	})
	ledger := source.CreateDB(t)
	t.Cleanup(func() { // after the engine has stopped
		source.Exec(t, "postgres", "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 'btfu_ledger' AND NOT active")
	})
	source.Exec(t, ledger, "CREATE TABLE entries(id int PRIMARY KEY)")
	source.Exec(t, db, `CREATE TABLE orders(id int PRIMARY KEY, customer text NOT NULL);
		INSERT INTO orders SELECT g, 'c' || g FROM generate_series(1, 30) g`)
	dir := writeConfig(t, fmt.Sprintf("[log]\nfile = \"btfu.log\"\n[[source]]\nname = \"shop\"\ndsn = %q\nslot = \"s_%s\"\nschedule = \"off\"\n", source.DSN(db), db))
	cfgPath := filepath.Join(dir, "config.toml")

	// No engine yet: btfu attach says where it looked and what to do.
	if r := btfu(t, dir, "attach", "--config", cfgPath); r.code != 1 || !strings.Contains(r.stderr, "btfu.sock") {
		t.Fatalf("attach without an engine: exit %d\n%s", r.code, r.all())
	}

	daemon := startTmux(t, dir, 80, 24, nil, "--no-tui", "--config", cfgPath)
	pid := daemon.panePid()
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	waitStatus := func(what string, ok func(state string, txPerSec float64) bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			var st struct {
				Sources []struct {
					State    string  `json:"state"`
					TxPerSec float64 `json:"tx_per_sec"`
				} `json:"sources"`
			}
			r := btfu(t, dir, "status", "--json")
			if r.code == 0 && json.Unmarshal([]byte(r.stdout), &st) == nil && len(st.Sources) > 0 && ok(st.Sources[0].State, st.Sources[0].TxPerSec) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("the engine never %s:\n%s\n%s", what, r.all(), daemon.screen(false))
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitStatus("streamed", func(state string, _ float64) bool { return state == "streaming" })
	// Only btfu's user may attach: the socket is 0600.
	if fi, err := os.Stat(filepath.Join(dir, "btfu.sock")); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("control socket: %v %v; want a socket of mode 0600", fi.Mode(), err)
	}

	s := startTmux(t, dir, 80, 24, nil, "--config", cfgPath)
	s.waitFor(fmt.Sprintf(`attached to pid %d on `, pid), 20*time.Second)
	s.waitFor(`shop\s+streaming`, 20*time.Second)

	// A base backup from the TUI, taken by the engine.
	s.keys("b")
	s.waitFor(`base backup of shop complete`, 60*time.Second)
	// The detail's probe and the timeline, read from the engine.
	s.keys("Enter")
	s.waitFor(`(?s)Source shop.*PostgreSQL \d+.*ok\s+wal_level\s+wal_level = logical`, 30*time.Second)
	s.keys("Escape")
	s.waitFor(`shop\s+streaming`, 10*time.Second) // else ESC t reads as alt+t
	s.keys("t")
	s.waitFor(`(?s)Coverage of shop.*█`, 20*time.Second)
	s.keys("Escape")
	s.waitFor(`shop\s+streaming`, 10*time.Second)
	source.Exec(t, db, "INSERT INTO orders VALUES (31, 'late'); DELETE FROM orders WHERE id <= 5; UPDATE orders SET customer = 'changed' WHERE id = 10")
	want := queryIDs(t, db, "SELECT id FROM orders")
	last := source.CurrentLSN(t)
	for deadline := time.Now().Add(60 * time.Second); btfu(t, dir, "restore", "--lsn", last.String(), "--dry-run").code != 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("coverage never reached the changes")
		}
	}
	target := source.CreateDB(t)

	// The wizard, to the latest state, into an empty database.
	s.keys("R")
	s.waitFor(`Restore wizard`, 10*time.Second)
	s.typeText("latest")
	s.keys("Enter")
	s.waitFor(`target database:`, 10*time.Second)
	s.typeText(source.DSN(db))
	s.keys("Enter")
	s.waitFor(`! the target is the source itself`, 20*time.Second)
	s.keys("C-u")
	s.typeText(source.DSN(target))
	s.keys("Enter")
	s.waitFor(`base backup\s+\S+`, 20*time.Second)
	s.keys("Enter")
	s.waitFor(`type restore to go on`, 10*time.Second)
	s.typeText("restore")
	s.keys("Enter")
	done := s.waitFor(`Restore finished|Restore failed`, 2*time.Minute)
	if !strings.Contains(done, "Restore finished") {
		t.Fatalf("the wizard's restore failed:\n%s", done)
	}
	if got := queryIDs(t, target, "SELECT id FROM orders"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored ids %v, the source holds %v", got, want)
	}
	if got := pgtest.QueryValue[string](t, source, target, "SELECT customer FROM orders WHERE id = 10"); got != "changed" {
		t.Fatalf("restored customer of 10 %q, want changed", got)
	}
	s.keys("Enter")
	s.waitFor(`restored shop into`, 10*time.Second)
	// The log screen shows the engine's events, the restore's among them.
	s.keys("L")
	s.waitFor(`restore of shop finished`, 10*time.Second)
	s.keys("Escape")
	s.waitFor(`shop\s+streaming`, 10*time.Second)

	// Register a second source with the form: the engine probes it,
	// appends it to its config.toml and starts it.
	s.keys("n")
	s.waitFor(`name:`, 10*time.Second)
	s.typeText("ledger")
	s.keys("Tab")
	s.typeText(source.DSN(ledger))
	s.keys("Tab", "Tab")
	s.typeText("off")
	s.keys("Enter")
	s.waitFor(`add to config.toml`, 30*time.Second)
	s.keys("y")
	s.waitFor(`ledger\s+streaming`, 60*time.Second)
	if cfg, err := os.ReadFile(cfgPath); err != nil || !strings.Contains(string(cfg), `name = "ledger"`) {
		t.Fatalf("config.toml after registering from the attached TUI: %v\n%s", err, cfg)
	}

	s.keys("q")
	s.waitFor(`btfu exited with status 0`, 20*time.Second)

	// btfu attach, then its terminal hangs up: it exits 0, alone.
	s2 := startTmux(t, dir, 80, 24, nil, "attach", "--config", cfgPath)
	s2.waitFor(`shop\s+streaming`, 20*time.Second)
	syscall.Kill(s2.panePid(), syscall.SIGHUP)
	s2.waitFor(`btfu exited with status 0`, 20*time.Second)

	// The engine runs on: its socket answers, and it keeps streaming.
	if strings.Contains(daemon.screen(false), "btfu exited") {
		t.Fatalf("the engine stopped with the attached TUI:\n%s", daemon.screen(false))
	}
	if err := syscall.Kill(pid, 0); err != nil {
		t.Fatalf("the engine's process is gone: %v", err)
	}
	source.Exec(t, db, "INSERT INTO orders VALUES (32, 'after quit')")
	after := source.CurrentLSN(t)
	for deadline := time.Now().Add(60 * time.Second); btfu(t, dir, "restore", "--source", "shop", "--lsn", after.String(), "--dry-run").code != 0; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the engine stopped streaming after the TUI quit:\n%s", daemon.screen(false))
		}
	}
	waitStatus("kept streaming", func(state string, _ float64) bool { return state == "streaming" })

	// A second btfu --no-tui is still refused: one engine per metadata.
	if r := btfu(t, dir, "--no-tui", "--config", cfgPath); r.code != 1 || !strings.Contains(r.stderr, "another btfu is running") {
		t.Fatalf("a second headless btfu: exit %d\n%s", r.code, r.all())
	}
	syscall.Kill(pid, syscall.SIGTERM)
	daemon.waitFor(`btfu exited with status 0`, 30*time.Second)
}

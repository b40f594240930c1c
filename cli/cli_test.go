package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/btfu/btfu/internal/pgtest"
)

var (
	source *pgtest.Cluster
	target *pgtest.Cluster // drill_target of drill_test.go
	bin    string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "btfu-cli-test-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	bin = filepath.Join(dir, "btfu")
	if out, err := exec.Command("go", "build", "-o", bin, "..").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build btfu: %v\n%s", err, out)
		os.Exit(1)
	}
	os.Exit(pgtest.Main(m, &source, &target))
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) all() string { return r.stdout + r.stderr }

// btfu runs the binary in dir with args.
func btfu(t *testing.T, dir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "BTFU_CONFIG=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestHelpDescribesEveryCommand(t *testing.T) {
	r := btfu(t, t.TempDir(), "--help")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.all())
	}
	for _, cmd := range []string{"status", "probe", "register", "config", "version", "--no-tui", "--config"} {
		if !strings.Contains(r.stdout, cmd) {
			t.Errorf("--help does not mention %s:\n%s", cmd, r.stdout)
		}
	}
	for _, cmd := range []string{"status", "probe", "register", "config", "version", "run"} {
		r := btfu(t, t.TempDir(), cmd, "--help")
		if r.code != 0 || !strings.Contains(r.stdout, "Usage: btfu "+cmd) || !strings.Contains(r.stdout, "-config") {
			t.Errorf("%s --help: exit %d\n%s", cmd, r.code, r.all())
		}
	}
	if r := btfu(t, t.TempDir(), "frobnicate"); r.code != 2 || !strings.Contains(r.stderr, `unknown command "frobnicate"`) {
		t.Errorf("unknown command: %d %s", r.code, r.all())
	}
}

func TestVersionListsTools(t *testing.T) {
	r := btfu(t, t.TempDir(), "version")
	for _, want := range []string{"btfu ", "commit ", "go1.", "pg_dump ", "pg_restore "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("version lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestConfigErrorsNameTheKeyAndHideThePassword(t *testing.T) {
	dir := writeConfig(t, `
[[source]]
name = "orders"
dsn = "postgres://app:hunter2-secret@db.example.com/shop"
schedule = "every 5m"
`)
	r := btfu(t, dir, "config", "check")
	if r.code != 1 || !strings.Contains(r.stderr, "source.orders.schedule: 'every 5m' is not a cron expression; try '*/5 * * * *'") {
		t.Fatalf("exit %d:\n%s", r.code, r.all())
	}
	dir = writeConfig(t, "[[source]]\nname = \"orders\"\ndsn = \"postgres://app:hunter2-secret@db.example.com/shop\"\n")
	r = btfu(t, dir, "config", "show")
	if r.code != 0 || strings.Contains(r.all(), "hunter2-secret") || !strings.Contains(r.stdout, "postgres://app:xxxxx@db.example.com/shop") {
		t.Fatalf("config show, exit %d:\n%s", r.code, r.all())
	}
	if r := btfu(t, t.TempDir(), "status"); r.code != 1 || !strings.Contains(r.stderr, "copy config.toml.example") {
		t.Fatalf("missing config: %d %s", r.code, r.all())
	}
}

func TestConfigFlagAndEnvironment(t *testing.T) {
	dir := writeConfig(t, "[[source]]\nname = \"a\"\ndsn = \"postgres://u@h/d\"\n")
	other := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	for _, args := range [][]string{{"--config", cfg, "config", "check"}, {"config", "check", "--config", cfg}} {
		if r := btfu(t, other, args...); r.code != 0 || !strings.Contains(r.stdout, "is valid: 1 source") {
			t.Errorf("%v: %d %s", args, r.code, r.all())
		}
	}
	cmd := exec.Command(bin, "config", "check")
	cmd.Dir = other
	cmd.Env = append(os.Environ(), "BTFU_CONFIG="+cfg)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "is valid") {
		t.Errorf("BTFU_CONFIG: %v %s", err, out)
	}
}

func sourceConfig(t *testing.T, db string) string {
	role := "cli_" + db
	source.Exec(t, db, fmt.Sprintf("CREATE ROLE %s LOGIN SUPERUSER PASSWORD 'cli-pass-77'", role))
	t.Cleanup(func() {
		source.Exec(t, db, "DROP OWNED BY "+role+" CASCADE")
		source.Exec(t, "postgres", "DROP ROLE IF EXISTS "+role)
	})
	return writeConfig(t, fmt.Sprintf("[[source]]\nname = \"shop\"\ndsn = %q\nslot = \"s_%s\"\n", source.DSNFor(role, "cli-pass-77", db), db))
}

func TestProbeAndStatus(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, "CREATE TABLE orders(id serial PRIMARY KEY, total numeric)")
	dir := sourceConfig(t, db)
	r := btfu(t, dir, "probe")
	if r.code != 0 || !strings.Contains(r.stdout, "wal_level = logical") || !strings.Contains(r.stdout, "Plan on ") {
		t.Fatalf("probe exit %d:\n%s", r.code, r.all())
	}
	r = btfu(t, dir, "probe", "--source", "shop", "--json")
	var rep struct {
		Checks []struct{ ID, Status string }
		Plan   struct{ Publication string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); err != nil || len(rep.Checks) < 15 || rep.Plan.Publication != "btfu_shop" {
		t.Fatalf("probe --json (%v):\n%s", err, r.all())
	}
	r = btfu(t, dir, "status", "--json")
	var st struct {
		Sources []struct {
			Name, State string
			Coverage    []any
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || len(st.Sources) != 1 || st.Sources[0].Name != "shop" || st.Sources[0].Coverage == nil {
		t.Fatalf("status --json (%v):\n%s", err, r.all())
	}
	if r := btfu(t, dir, "status"); r.code != 0 || !strings.Contains(r.stdout, "shop") || !strings.Contains(r.stdout, "RESTORABLE") {
		t.Fatalf("status: %s", r.all())
	}
	if r := btfu(t, dir, "register"); r.code != 2 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("register without a terminal must ask for --yes: %d %s", r.code, r.all())
	}
	if r := btfu(t, dir, "register", "--yes"); r.code != 0 || !strings.Contains(r.stdout, "created  publication btfu_shop") {
		t.Fatalf("register: %d %s", r.code, r.all())
	}
	if r := btfu(t, dir, "register", "--yes"); r.code != 0 || !strings.Contains(r.stdout, "nothing changed") {
		t.Fatalf("register twice: %d %s", r.code, r.all())
	}
}

func TestProbeFailureExitsNonZero(t *testing.T) {
	c, err := pgtest.Start(pgtest.Options{WALLevel: "replica"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	dir := writeConfig(t, fmt.Sprintf("[[source]]\nname = \"x\"\ndsn = %q\n", c.DSN("postgres")))
	r := btfu(t, dir, "probe")
	if r.code != 1 || !strings.Contains(r.stdout, "FAIL  wal_level") || !strings.Contains(r.stdout, "fix: set wal_level = logical") {
		t.Fatalf("exit %d:\n%s", r.code, r.all())
	}
	dir = writeConfig(t, "[[source]]\nname = \"x\"\ndsn = \"postgres://u:pw-unreach-5@127.0.0.1:1/d\"\n")
	r = btfu(t, dir, "probe")
	if r.code != 1 || !strings.Contains(r.stderr, "cannot connect to source x at 127.0.0.1:1") || strings.Contains(r.all(), "pw-unreach-5") {
		t.Fatalf("unreachable: %d %s", r.code, r.all())
	}
}

func TestHeadlessRunRegistersAndStopsOnSignal(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, "CREATE TABLE orders(id serial PRIMARY KEY)")
	dir := sourceConfig(t, db)
	cmd := exec.Command(bin, "--no-tui")
	cmd.Dir = dir
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(errb.String(), "source.registered") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("not registered in time:\n%s", errb.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, errb.String())
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("did not stop within 10s of SIGTERM")
	}
	logs := errb.String()
	if strings.Contains(logs, "cli-pass-77") || out.Len() != 0 {
		t.Fatalf("stdout %q; logs leak the password or are missing:\n%s", out.String(), logs)
	}
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		if !json.Valid([]byte(line)) {
			t.Fatalf("headless log line is not JSON: %s", line)
		}
	}
	if n := pgtest.QueryValue[int64](t, source, db, "SELECT count(*) FROM pg_publication WHERE pubname = 'btfu_shop'"); n != 1 {
		t.Fatal("publication not created by the headless run")
	}
	if _, err := os.Stat(filepath.Join(dir, "btfu.db")); err != nil {
		t.Fatalf("metadata not created in the working directory: %v", err)
	}
}

type statusJSON struct {
	Sources []struct {
		Name, State string
		FlushedLSN  string `json:"flushed_lsn"`
		BaseBackups int    `json:"base_backups"`
		Segments    int
		Coverage    []struct {
			FromLSN  string    `json:"from_lsn"`
			ToLSN    string    `json:"to_lsn"`
			FromTime time.Time `json:"from_time"`
			ToTime   time.Time `json:"to_time"`
		}
	}
}

func TestStatusShowsCoverageGrowingWhileRunning(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, "CREATE TABLE orders(id serial PRIMARY KEY, total int)")
	dir := writeConfig(t, fmt.Sprintf("[[source]]\nname = \"shop\"\ndsn = %q\nslot = \"s_%s\"\n", source.DSN(db), db))
	t.Cleanup(func() {
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 's_%s' AND NOT active", db))
	})
	cmd := exec.Command(bin, "--no-tui")
	cmd.Dir = dir
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	status := func() statusJSON {
		r := btfu(t, dir, "status", "--json")
		var st statusJSON
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status --json: %v\n%s", err, r.all())
		}
		return st
	}
	var first time.Time
	deadline := time.Now().Add(60 * time.Second)
	for {
		source.Exec(t, db, "INSERT INTO orders(total) VALUES (1)")
		st := status()
		s := st.Sources[0]
		if len(s.Coverage) == 1 && s.BaseBackups == 1 && s.State == "streaming" {
			if first.IsZero() {
				first = s.Coverage[0].ToTime
			} else if s.Coverage[0].ToTime.After(first) && s.Segments > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("coverage did not grow: %+v\n%s", st, logs.String())
		}
		time.Sleep(300 * time.Millisecond)
	}
	if r := btfu(t, dir, "status"); !strings.Contains(r.stdout, "streaming") || !strings.Contains(r.stdout, " UTC") {
		t.Fatalf("status table:\n%s", r.stdout)
	}
}

func TestRestoreCommand(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, "CREATE TABLE orders(id serial PRIMARY KEY, total int)")
	// The restore run by the command is announced like the engine's.
	var hookMu sync.Mutex
	var hookBodies []string
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		hookMu.Lock()
		hookBodies = append(hookBodies, string(b))
		hookMu.Unlock()
	}))
	defer hook.Close()
	dir := writeConfig(t, fmt.Sprintf("[[notify.channel]]\nname = \"hook\"\nkind = \"webhook\"\nurl = %q\n[[source]]\nname = \"shop\"\ndsn = %q\nslot = \"s_%s\"\n", hook.URL, source.DSN(db), db))
	t.Cleanup(func() {
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 's_%s' AND NOT active", db))
	})
	cmd := exec.Command(bin, "--no-tui")
	cmd.Dir = dir
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var st statusJSON
		json.Unmarshal([]byte(btfu(t, dir, "status", "--json").stdout), &st)
		if len(st.Sources) == 1 && st.Sources[0].State == "streaming" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not streaming:\n%s", logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	source.Exec(t, db, "INSERT INTO orders(total) SELECT g FROM generate_series(1, 10) g")
	time.Sleep(50 * time.Millisecond)
	mark := pgtest.QueryValue[time.Time](t, source, db, "SELECT clock_timestamp()")
	time.Sleep(50 * time.Millisecond)
	source.Exec(t, db, "DELETE FROM orders WHERE id > 5")
	markText := mark.UTC().Format("2006-01-02 15:04:05.999999") + "+00"
	// Wait until coverage passes the mark.
	for {
		r := btfu(t, dir, "restore", "--time", markText, "--dry-run")
		if r.code == 0 {
			if !strings.Contains(r.stdout, "Restore plan: all transactions committed at or before") || !strings.Contains(r.stdout, "base backup") {
				t.Fatalf("dry run:\n%s", r.all())
			}
			break
		}
		if time.Now().After(deadline.Add(30 * time.Second)) {
			t.Fatalf("dry run never succeeded: %s", r.all())
		}
		time.Sleep(300 * time.Millisecond)
	}
	// --base names the base backup; one that does not fit is refused with
	// the ones that do.
	if r := btfu(t, dir, "restore", "--time", markText, "--base", "no/such/base.dump", "--dry-run"); r.code != 1 || !strings.Contains(r.stderr, "base backup no/such/base.dump cannot restore") || !strings.Contains(r.stderr, "these can: ") {
		t.Fatalf("restore --base with an unknown key: %d %s", r.code, r.all())
	}
	target := source.CreateDB(t)
	if r := btfu(t, dir, "restore", "--time", markText, "--target", source.DSN(target)); r.code != 2 || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("no terminal, no --yes: %d %s", r.code, r.all())
	}
	if r := btfu(t, dir, "restore", "--time", "2026-11-23 14:05:00", "--target", source.DSN(target), "--yes"); r.code != 2 || !strings.Contains(r.stderr, "has no time zone") {
		t.Fatalf("time without zone: %d %s", r.code, r.all())
	}
	if r := btfu(t, dir, "restore", "--time", markText, "--target", source.DSN(db), "--yes"); r.code != 1 || !strings.Contains(r.stderr, "never restores into the source") {
		t.Fatalf("into the source: %d %s", r.code, r.all())
	}
	r := btfu(t, dir, "restore", "--time", markText, "--target", source.DSN(target), "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "Restored all transactions committed at or before") {
		t.Fatalf("restore: %d %s", r.code, r.all())
	}
	if !regexp.MustCompile(`set-based    [1-9]\d* of the \d+ rows, in [1-9]\d* batch\(es\)\n`).MatchString(r.stdout) {
		t.Errorf("the restore does not say how many rows it applied set-based:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, `"msg":"restore progress"`) || !strings.Contains(r.stderr, `"phase":"done"`) {
		t.Fatalf("no JSON progress lines without a terminal:\n%s", r.stderr)
	}
	if n := pgtest.QueryValue[int64](t, source, target, "SELECT count(*) FROM orders"); n != 10 {
		t.Fatalf("restored %d rows, want the 10 of the mark", n)
	}
	hookMu.Lock()
	bodies := strings.Join(hookBodies, "\n")
	hookMu.Unlock()
	if !strings.Contains(bodies, `"restore.finished"`) || !strings.Contains(bodies, "restore of shop finished") {
		t.Errorf("the webhook did not hear of the restore; it got:\n%s", bodies)
	}
	if next := pgtest.QueryValue[int64](t, source, target, "SELECT nextval('orders_id_seq')"); next <= 10 {
		t.Fatalf("sequence would reuse %d", next)
	}
	if r := btfu(t, dir, "verify"); r.code != 0 || !strings.Contains(r.stdout, "all artifacts verified") || !strings.Contains(r.stdout, "restorable ") {
		t.Fatalf("verify: %d %s", r.code, r.all())
	}

	// The restore test: the latest state into a scratch database, row
	// counts compared with the (now quiet) source.
	lsn := source.CurrentLSN(t)
	for {
		if r := btfu(t, dir, "restore", "--lsn", lsn.String(), "--dry-run"); r.code == 0 {
			break
		}
		if time.Now().After(deadline.Add(60 * time.Second)) {
			t.Fatal("coverage never reached the delete")
		}
		time.Sleep(300 * time.Millisecond)
	}
	scratch := source.CreateDB(t)
	r = btfu(t, dir, "verify", "--restore-test", source.DSN(scratch))
	if r.code != 0 || !strings.Contains(r.stdout, "restore test passed: 1 table(s) match the source") || !strings.Contains(r.stdout, "public.orders") {
		t.Fatalf("verify --restore-test: %d %s", r.code, r.all())
	}
	if n := pgtest.QueryValue[int64](t, source, scratch, "SELECT count(*) FROM orders"); n != 5 {
		t.Fatalf("restore test left %d rows, want 5", n)
	}
	if r := btfu(t, dir, "verify", "--restore-test", source.DSN(scratch)); r.code != 1 || !strings.Contains(r.stderr, "not empty") {
		t.Fatalf("restore test into a non-empty database: %d %s", r.code, r.all())
	}

	// Without --target, the source's restore_target is used; without
	// either, the command says which to give.
	if r := btfu(t, dir, "restore", "--latest", "--yes"); r.code != 2 || !strings.Contains(r.stderr, "--target DSN is required") || !strings.Contains(r.stderr, "restore_target on source shop") {
		t.Fatalf("no target: %d %s", r.code, r.all())
	}
	drill := source.CreateDB(t)
	f, err := os.OpenFile(filepath.Join(dir, "config.toml"), os.O_APPEND|os.O_WRONLY, 0)
	if err == nil {
		_, err = fmt.Fprintf(f, "restore_target = %q\n", source.DSN(drill))
		f.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
	if r := btfu(t, dir, "restore", "--latest", "--yes"); r.code != 0 || !strings.Contains(r.stdout, "Restored") {
		t.Fatalf("restore into restore_target: %d %s", r.code, r.all())
	}
	if n := pgtest.QueryValue[int64](t, source, drill, "SELECT count(*) FROM orders"); n != 5 {
		t.Fatalf("restore_target holds %d rows, want 5", n)
	}
}

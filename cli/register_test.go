package cli_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/internal/pgtest"
)

// rowsOf reads every table of db that the test compares, one string per
// table: its rows in order.
func rowsOf(t *testing.T, db string, tables ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, tbl := range tables {
		out[tbl] = pgtest.QueryValue[string](t, source, db, fmt.Sprintf("SELECT coalesce(string_agg(x::text, ' ' ORDER BY x.id), '(empty)') FROM %s x", tbl))
	}
	return out
}

// waitCovered waits until the source of dir is restorable to lsn.
func waitCovered(t *testing.T, dir string, lsn pglogrepl.LSN) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		r := btfu(t, dir, "restore", "--lsn", lsn.String(), "--dry-run")
		if r.code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("coverage never reached %s: %s", lsn, r.all())
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// restoreTo restores the source of dir to lsn into a new database, once
// coverage reaches it, and returns the database and the command's result.
func restoreTo(t *testing.T, dir string, lsn pglogrepl.LSN) (string, result) {
	t.Helper()
	waitCovered(t, dir, lsn)
	target := source.CreateDB(t)
	return target, btfu(t, dir, "restore", "--lsn", lsn.String(), "--target", source.DSN(target), "--yes")
}

// waitBaseBackups waits until the source of dir has n base backups.
func waitBaseBackups(t *testing.T, dir string, n int) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		ss, _ := sourceStatusJSON(t, dir)
		if ss.BaseBackups >= n && ss.Streaming {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d base backup(s), want %d: %+v", ss.BaseBackups, n, ss)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// A table that 'btfu register' adds to the publication of a source that
// already has a base backup (here one no longer excluded, registered while
// btfu was not running) is covered from where it joined. A restore from
// the older base backup to a point after that names it LEFT OUT instead of
// handing back its base rows plus only the changes made after it joined;
// the next start of btfu takes the base backup from which restores hold
// it whole.
func TestRegisterAddingTablesRecordsCoverageAndTakesABaseBackup(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE t (id int PRIMARY KEY, v text); CREATE TABLE extra (id int PRIMARY KEY, v text);
		INSERT INTO extra VALUES (1, 'in the first base backup')`)
	cfg := fmt.Sprintf("[[source]]\nname = \"reg\"\ndsn = %q\nslot = \"s_%s\"\nschedule = \"off\"\n", source.DSN(db), db)
	dir := writeConfig(t, cfg+"exclude_tables = [\"public.extra\"]\n")
	t.Cleanup(func() {
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 's_%s%%' AND NOT active", db))
	})

	stop, _ := startDaemon(t, dir)
	waitBaseBackups(t, dir, 1)
	source.Exec(t, db, `INSERT INTO t VALUES (1, 'first')`)
	waitCovered(t, dir, source.CurrentLSN(t))
	stop()

	// extra is no longer excluded; btfu is not running.
	if err := os.WriteFile(filepath.Join(dir, "config.toml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	source.Exec(t, db, `INSERT INTO extra VALUES (2, 'while excluded')`)
	r := btfu(t, dir, "register", "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "added public.extra") {
		t.Fatalf("register: %d %s", r.code, r.all())
	}
	if !strings.Contains(r.stdout, "public.extra joined publication btfu_reg") || !strings.Contains(r.stdout, "base backup") {
		t.Errorf("register does not say which tables joined and that a base backup follows:\n%s", r.stdout)
	}
	source.Exec(t, db, `INSERT INTO extra VALUES (3, 'after join'); UPDATE extra SET v = 'updated after join' WHERE id = 1; INSERT INTO t VALUES (2, 'second')`)
	mark := source.CurrentLSN(t)
	want := rowsOf(t, db, "t", "extra")

	startDaemon(t, dir)
	// From the older base backup: t exact; extra exact, or named.
	target, r := restoreTo(t, dir, mark)
	got := rowsOf(t, target, "t", "extra")
	if got["t"] != want["t"] {
		t.Errorf("t restored %s, source held %s", got["t"], want["t"])
	}
	// (The base backup btfu takes at start is after the mark.)
	if got["extra"] != want["extra"] && !strings.Contains(r.stdout, "LEFT OUT     public.extra") {
		t.Errorf("extra restored %s, source held %s, and the restore did not say it is left out: %d\n%s", got["extra"], want["extra"], r.code, r.all())
	}
	if r.code != 1 || !strings.Contains(r.stderr, "1 table(s) are not at the requested point") {
		t.Errorf("a restore leaving a table out must exit 1 and say so: %d\n%s", r.code, r.all())
	}

	// The base backup btfu takes at start holds extra: a restore to a
	// point after it is exact.
	waitBaseBackups(t, dir, 2)
	source.Exec(t, db, `UPDATE extra SET v = 'later' WHERE id = 2; INSERT INTO t VALUES (3, 'third')`)
	mark = source.CurrentLSN(t)
	want = rowsOf(t, db, "t", "extra")
	target, r = restoreTo(t, dir, mark)
	if r.code != 0 || strings.Contains(r.stdout, "LEFT OUT") {
		t.Errorf("restore after the new base backup: %d\n%s", r.code, r.all())
	}
	if got := rowsOf(t, target, "t", "extra"); got["t"] != want["t"] || got["extra"] != want["extra"] {
		t.Errorf("restored %v, source held %v", got, want)
	}
}

// 'btfu register' while btfu runs: a role without event-trigger rights
// (no DDL capture) and a paused source, so nothing but the command adds a
// table made meanwhile. The command records it on the running btfu's
// metadata and says the base backup follows; resuming the source takes
// it. A restore from the older base backup names the table LEFT OUT; one
// to a point after the new base backup holds it whole.
func TestRegisterWhileBtfuRunsAndTheSourceIsPaused(t *testing.T) {
	db := source.CreateDB(t)
	role := "reg_" + db
	source.Exec(t, "postgres", fmt.Sprintf("CREATE ROLE %s LOGIN REPLICATION PASSWORD 'reg-pass-5'; GRANT CREATE ON DATABASE %s TO %s", role, db, role))
	t.Cleanup(func() {
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 's_%s%%' AND NOT active", db))
		source.Exec(t, db, "DROP OWNED BY "+role+" CASCADE")
		source.Exec(t, "postgres", "DROP ROLE IF EXISTS "+role)
	})
	source.Exec(t, db, fmt.Sprintf(`GRANT CREATE ON SCHEMA public TO %s;
		CREATE TABLE t (id int PRIMARY KEY, v text); ALTER TABLE t OWNER TO %s`, role, role))
	dir := writeConfig(t, fmt.Sprintf("[[source]]\nname = \"lp\"\ndsn = %q\nslot = \"s_%s\"\nschedule = \"off\"\n", source.DSNFor(role, "reg-pass-5", db), db))

	startDaemon(t, dir)
	waitBaseBackups(t, dir, 1)
	source.Exec(t, db, `INSERT INTO t VALUES (1, 'first')`)
	waitCovered(t, dir, source.CurrentLSN(t))
	if r := btfu(t, dir, "pause"); r.code != 0 {
		t.Fatalf("pause: %d %s", r.code, r.all())
	}
	waitStatus(t, dir, " paused ")

	source.Exec(t, db, fmt.Sprintf(`CREATE TABLE late (id int PRIMARY KEY, v text); ALTER TABLE late OWNER TO %s;
		INSERT INTO late VALUES (1, 'before it joined')`, role))
	r := btfu(t, dir, "register", "--yes")
	if r.code != 0 || !strings.Contains(r.stdout, "added public.late") || !strings.Contains(r.stdout, "public.late joined publication btfu_lp") ||
		!strings.Contains(r.stdout, "source lp is paused in the running btfu: btfu takes it the next time it starts source lp") {
		t.Fatalf("register: %d %s", r.code, r.all())
	}
	source.Exec(t, db, `INSERT INTO late VALUES (2, 'after'); UPDATE late SET v = 'updated' WHERE id = 1; INSERT INTO t VALUES (2, 'second')`)
	mark := source.CurrentLSN(t)
	want := rowsOf(t, db, "t")

	if r := btfu(t, dir, "resume"); r.code != 0 {
		t.Fatalf("resume: %d %s", r.code, r.all())
	}
	target, r := restoreTo(t, dir, mark)
	if got := rowsOf(t, target, "t"); got["t"] != want["t"] {
		t.Errorf("t restored %s, source held %s", got["t"], want["t"])
	}
	if r.code != 1 || !strings.Contains(r.stdout, "LEFT OUT     public.late") {
		t.Errorf("a restore from the base backup before late joined must name it left out: %d\n%s", r.code, r.all())
	}

	waitBaseBackups(t, dir, 2)
	source.Exec(t, db, `UPDATE late SET v = 'later' WHERE id = 2; INSERT INTO t VALUES (3, 'third')`)
	mark = source.CurrentLSN(t)
	want = rowsOf(t, db, "t", "late")
	target, r = restoreTo(t, dir, mark)
	if r.code != 0 || strings.Contains(r.stdout, "LEFT OUT") {
		t.Errorf("restore after the new base backup: %d\n%s", r.code, r.all())
	}
	if got := rowsOf(t, target, "t", "late"); got["t"] != want["t"] || got["late"] != want["late"] {
		t.Errorf("restored %v, source held %v", got, want)
	}
}

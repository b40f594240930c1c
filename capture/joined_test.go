package capture_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btfu/btfu/capture"
	"github.com/btfu/btfu/pgbin"
	"github.com/btfu/btfu/sourcedb"
	"github.com/btfu/btfu/store"
)

// Tables with rows that join the publication (here: a left-out table given
// a key) get a base backup joined_backup_interval after the newest base
// backup of any kind, however many join meanwhile: each is a pg_dump of the
// whole source, whose locks make the application's ALTER TABLE wait. The
// event says when it starts; until then a restore from the older base names
// the table LEFT OUT and restores the rest exactly.
func TestBackupsForJoinedTablesAreSpaced(t *testing.T) {
	f := newFixtureWith(t, `CREATE TABLE log(id serial PRIMARY KEY, v text);
		CREATE TABLE k1 (id int NOT NULL, v text); INSERT INTO k1 VALUES (1, 'a');
		CREATE TABLE k2 (id int NOT NULL, v text); INSERT INTO k2 VALUES (1, 'a')`, `joined_backup_interval = "1h"`)
	ev := &recorder{}
	r := f.startWith(func(w *capture.Worker) { w.SequenceInterval = 100 * time.Millisecond; w.Notify = ev.notify })
	waitStatus(t, r.w, "streaming", func(s capture.Status) bool { return s.State == "streaming" })
	bases := func() int {
		t.Helper()
		bb, err := f.meta.ListBaseBackups(context.Background(), f.id)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, b := range bb {
			if b.Status == store.BackupComplete {
				n++
			}
		}
		return n
	}
	if n := bases(); n != 1 {
		t.Fatalf("%d base backups at start", n)
	}
	leftOut := func(want ...string) {
		t.Helper()
		plan := f.restoreEquals(source.CurrentLSN(t))
		var got []string
		for _, c := range plan.LeftOut() {
			got = append(got, c.Table)
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			recs, _ := f.meta.ListTableCoverage(context.Background(), f.id)
			t.Errorf("left out of the restore: %v, want %v (base at %s; coverage records %+v)", got, want, plan.Base.ConsistentLSN, recs)
		}
	}
	// The chain's first base backup was just taken: no pg_dump right after.
	source.Exec(t, f.db, `ALTER TABLE k1 ADD PRIMARY KEY (id); INSERT INTO log(v) VALUES ('after k1')`)
	if msg := ev.wait(t, "publication.table_added"); !strings.Contains(msg, "k1") || !strings.Contains(msg, "starts at") || !strings.Contains(msg, "LEFT OUT") {
		t.Errorf("first join: %s", msg)
	}
	// Thirty sequence intervals: without spacing it would have started.
	time.Sleep(3 * time.Second)
	if n := bases(); n != 1 {
		t.Fatalf("%d base backups: a join started one right after the chain's first", n)
	}
	leftOut("public.k1", "public.k2") // k1 joined after the base; k2 has no key yet

	// A base backup on demand covers k1; k2 joining after it waits again.
	if _, err := r.w.BackupNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	ev.mu.Lock()
	ev.list = nil
	ev.mu.Unlock()
	source.Exec(t, f.db, `ALTER TABLE k2 ADD PRIMARY KEY (id); INSERT INTO log(v) VALUES ('after k2')`)
	if msg := ev.wait(t, "publication.table_added"); !strings.Contains(msg, "k2") || !strings.Contains(msg, "starts at") {
		t.Errorf("second join: %s", msg)
	}
	time.Sleep(3 * time.Second)
	if n := bases(); n != 2 {
		t.Fatalf("%d base backups: the second join started one within joined_backup_interval", n)
	}
	leftOut("public.k2")
}

// Once joined_backup_interval has passed since the newest base backup, the
// join's base backup starts, and the table is in restores from it.
func TestJoinedTableBackupStartsAfterTheInterval(t *testing.T) {
	f := newFixtureWith(t, `CREATE TABLE log(id serial PRIMARY KEY, v text);
		CREATE TABLE k1 (id int NOT NULL, v text); INSERT INTO k1 VALUES (1, 'a')`, `joined_backup_interval = "2s"`)
	r := f.startWith(func(w *capture.Worker) { w.SequenceInterval = 100 * time.Millisecond })
	waitStatus(t, r.w, "streaming", func(s capture.Status) bool { return s.State == "streaming" })
	source.Exec(t, f.db, `ALTER TABLE k1 ADD PRIMARY KEY (id); UPDATE k1 SET v = 'b'`)
	joinedBackupRestores(t, f, "no base backup for the joined table")
}

// A base backup for joined tables that fails (a busy schema can change
// under pg_dump) is tried again joined_backup_interval later, until one
// succeeds; the tables are not left to the next scheduled base backup.
func TestFailedJoinedTableBackupIsTriedAgain(t *testing.T) {
	real, err := pgbin.Find(context.Background(), "pg_dump", 0)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	flag := filepath.Join(dir, "fail")
	script := "#!/bin/sh\nif [ -e " + flag + " ] && [ \"$1\" != \"--version\" ]; then echo 'pg_dump: error: failing on purpose' >&2; exit 1; fi\nexec " + real.Path + " \"$@\"\n"
	if err := os.WriteFile(filepath.Join(dir, "pg_dump"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(pgbin.EnvBinDir, dir)
	f := newFixtureWith(t, `CREATE TABLE log(id serial PRIMARY KEY, v text);
		CREATE TABLE k1 (id int NOT NULL, v text); INSERT INTO k1 VALUES (1, 'a')`, `joined_backup_interval = "2s"`)
	ev := &recorder{}
	r := f.startWith(func(w *capture.Worker) { w.SequenceInterval = 100 * time.Millisecond; w.Notify = ev.notify })
	waitStatus(t, r.w, "streaming", func(s capture.Status) bool { return s.State == "streaming" })
	if err := os.WriteFile(flag, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	source.Exec(t, f.db, `ALTER TABLE k1 ADD PRIMARY KEY (id); UPDATE k1 SET v = 'b'`)
	if msg := ev.wait(t, "backup.failed"); !strings.Contains(msg, "tried again") {
		t.Errorf("failed join backup: %s", msg)
	}
	if err := os.Remove(flag); err != nil {
		t.Fatal(err)
	}
	joinedBackupRestores(t, f, "the failed base backup for the joined table was not tried again")
}

// joinedBackupRestores waits for a second complete base backup (the one
// for the joined table), then restores now from it: nothing left out.
func joinedBackupRestores(t *testing.T, f *fixture, missing string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		bb, err := f.meta.ListBaseBackups(context.Background(), f.id)
		if err != nil {
			t.Fatal(err)
		}
		if n := len(bb); n >= 2 && bb[n-1].Status == store.BackupComplete {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %+v", missing, bb)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if left := f.restoreEquals(source.CurrentLSN(t)).LeftOut(); len(left) != 0 {
		t.Errorf("left out of a restore from the base taken after the join: %+v", left)
	}
}

// A commit is in the WAL a moment before it is visible: a new-tables check
// may list a table without the key a transaction just added (the capture
// trigger joined it in that transaction, whose commit LSN is before the
// listing's). The check asks the publication again before recording the
// table left out: a published table is not.
func TestCheckDoesNotLeaveOutATableThatIsPublishedNow(t *testing.T) {
	f := newFixtureWith(t, `CREATE TABLE log(id serial PRIMARY KEY, v text);
		CREATE TABLE k1 (id int NOT NULL, v text); INSERT INTO k1 VALUES (1, 'a');
		CREATE TABLE kl (id int NOT NULL, v text) PARTITION BY RANGE (id);
		CREATE TABLE kl_1 PARTITION OF kl FOR VALUES FROM (0) TO (100); INSERT INTO kl VALUES (1, 'a')`, "")
	r := f.startWith(func(w *capture.Worker) {})
	waitStatus(t, r.w, "streaming", func(s capture.Status) bool { return s.State == "streaming" })
	// kl_1 joins through its root: only kl is a member of the publication.
	source.Exec(t, f.db, `ALTER TABLE k1 ADD PRIMARY KEY (id); ALTER TABLE kl ADD PRIMARY KEY (id)`)
	joined := source.CurrentLSN(t)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		recs, _ := f.meta.ListTableCoverage(context.Background(), f.id)
		if slices.ContainsFunc(recs, func(c store.TableCoverage) bool { return c.Table == "public.k1" && !c.LeftOut }) &&
			slices.ContainsFunc(recs, func(c store.TableCoverage) bool { return c.Table == "public.kl_1" && !c.LeftOut }) {
			break // the stream recorded the joins
		}
		if time.Now().After(deadline) {
			t.Fatalf("the join was not recorded: %+v", recs)
		}
	}
	// The listing "missed" the key: its LSN is after the join's commit.
	r.w.RecordNewTables(context.Background(), &sourcedb.NewTables{Undecided: []string{"public.k1", "public.kl_1"}, ListedLSN: joined + 1, LSN: joined + 2})
	recs, err := f.meta.ListTableCoverage(context.Background(), f.id)
	if err != nil {
		t.Fatal(err)
	}
	if left := store.LeftOutNow(recs); slices.Contains(left, "public.k1") || slices.Contains(left, "public.kl_1") {
		t.Fatalf("a published table recorded left out: %v (%+v)", left, recs)
	}
}

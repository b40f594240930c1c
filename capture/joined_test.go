package capture_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/btfu/btfu/capture"
	"github.com/btfu/btfu/store"
)

// Tables with rows that join the publication (here: a left-out table given
// a key) get one base backup at once, then none before
// joined_backup_interval however many join meanwhile: each is a pg_dump of
// the whole source. The event says when the next one starts; until then a
// restore from the older base names the later table LEFT OUT and restores
// the rest exactly.
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
	source.Exec(t, f.db, `ALTER TABLE k1 ADD PRIMARY KEY (id)`)
	if msg := ev.wait(t, "publication.table_added"); !strings.Contains(msg, "taking a base backup") {
		t.Errorf("first join: %s", msg)
	}
	deadline := time.Now().Add(60 * time.Second)
	for bases() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("no base backup after the first table joined")
		}
		time.Sleep(50 * time.Millisecond)
	}
	ev.mu.Lock()
	ev.list = nil
	ev.mu.Unlock()
	source.Exec(t, f.db, `ALTER TABLE k2 ADD PRIMARY KEY (id); INSERT INTO log(v) VALUES ('after k2')`)
	if msg := ev.wait(t, "publication.table_added"); !strings.Contains(msg, "k2") || !strings.Contains(msg, "starts at") || !strings.Contains(msg, "LEFT OUT") {
		t.Errorf("second join: %s", msg)
	}
	// Thirty sequence intervals: without spacing it would have started.
	time.Sleep(3 * time.Second)
	if n := bases(); n != 2 {
		t.Fatalf("%d base backups: the second join started one within joined_backup_interval", n)
	}
	plan := f.restoreEquals(source.CurrentLSN(t))
	if left := plan.LeftOut(); len(left) != 1 || left[0].Table != "public.k2" {
		recs, _ := f.meta.ListTableCoverage(context.Background(), f.id)
		t.Errorf("left out of the restore: %+v, want public.k2 (base at %s; coverage records %+v)", left, plan.Base.ConsistentLSN, recs)
	}
}

package engine

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/restore"
)

// restoreAt restores source "app" of e to lsn into a new database and
// returns it with the summary.
func restoreAt(t *testing.T, e *Engine, lsn pglogrepl.LSN) (string, restore.Summary) {
	t.Helper()
	ctx := context.Background()
	var plan *restore.Plan
	var err error
	waitFor(t, func() bool {
		plan, err = e.PlanRestore(ctx, "app", restore.Target{LSN: lsn})
		return err == nil
	}, "coverage up to "+lsn.String())
	target := source.CreateDB(t)
	sum, err := e.Restore(ctx, "app", plan, restore.Options{TargetDSN: source.DSN(target)})
	if err != nil {
		t.Fatal(err)
	}
	return target, sum
}

// With the default configuration as superuser, tables created after
// registration never make the application's statements fail: a table
// with a key joins the publication in its creating transaction (covered
// from its first row), one without is left out and said so everywhere,
// and one that loses its key leaves the publication before the next
// UPDATE.
func TestNewTablesNeverBreakTheApplication(t *testing.T) {
	e, db := newEngine(t, "")
	events := e.Subscribe(t.Context())
	run(t, e)
	waitState(t, e, "streaming")

	// Every statement here is the application's: none may fail.
	source.Exec(t, db, `CREATE TABLE nokey (a int, b text); INSERT INTO nokey VALUES (1, 'x'), (2, 'y');
		UPDATE nokey SET b = 'z' WHERE a = 1; DELETE FROM nokey WHERE a = 2`)
	source.Exec(t, db, `BEGIN; CREATE TABLE keyed (id int PRIMARY KEY, v text); INSERT INTO keyed SELECT g, 'v' || g FROM generate_series(1, 50) g; COMMIT;
		UPDATE keyed SET v = upper(v) WHERE id % 5 = 0; DELETE FROM keyed WHERE id > 45`)
	source.Exec(t, db, `CREATE TABLE parent (id int PRIMARY KEY); CREATE TABLE child (note text) INHERITS (parent);
		INSERT INTO child VALUES (1, 'c'); UPDATE child SET note = 'd'; UPDATE parent SET id = 2; DELETE FROM child`)
	source.Exec(t, db, `CREATE TABLE made AS SELECT g AS id FROM generate_series(1, 5) g; UPDATE made SET id = id + 1`)
	source.Exec(t, db, `INSERT INTO t (v) VALUES ('after')`)
	if got := pgtest.QueryValue[string](t, source, db, `SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = 'btfu_app'`); got != "keyed,parent,t" {
		t.Fatalf("published %q", got)
	}
	mark := source.CurrentLSN(t)
	want := tableHashes(t, source, db)

	// Losing the key takes the table out before the next UPDATE.
	source.Exec(t, db, `ALTER TABLE keyed DROP CONSTRAINT keyed_pkey; UPDATE keyed SET v = 'gone'`)

	ev := waitEvent(t, events, "publication.table_left_out")
	if !strings.Contains(ev.Message, "nokey") {
		t.Fatalf("left-out event: %s", ev.Message)
	}
	waitFor(t, func() bool {
		st, err := e.Status(context.Background())
		return err == nil && strings.Contains(st.Sources[0].Attention, "NOT backed up") && strings.Contains(strings.Join(st.Sources[0].LeftOut, ","), "public.keyed")
	}, "status naming the tables left out")
	st, _ := e.Status(context.Background())
	for _, tbl := range []string{"public.nokey", "public.child", "public.made", "public.keyed"} {
		if !strings.Contains(strings.Join(st.Sources[0].LeftOut, ","), tbl) {
			t.Errorf("status left out %v, want %s", st.Sources[0].LeftOut, tbl)
		}
	}

	target, sum := restoreAt(t, e, mark)
	if n := pgtest.QueryValue[int64](t, source, target, `SELECT (SELECT count(*) FROM pg_event_trigger) + (SELECT count(*) FROM pg_publication) + (SELECT count(*) FROM pg_namespace WHERE nspname = 'btfu')`); n != 0 {
		t.Errorf("the target holds %d of btfu's capture objects (event trigger, publication, schema)", n)
	}
	got := tableHashes(t, source, target)
	for _, tbl := range []string{"public.t", "public.keyed", "public.parent"} {
		if got[tbl] != want[tbl] {
			t.Errorf("%s restored %s, source held %s", tbl, got[tbl], want[tbl])
		}
	}
	left := strings.Join(sum.LeftOut, "\n")
	for _, tbl := range []string{"public.nokey", "public.child", "public.made"} {
		if !strings.Contains(left, tbl) {
			t.Errorf("restore summary does not name %s as left out:\n%s", tbl, left)
		}
	}
}

// A source registered by an older btfu with a FOR ALL TABLES publication
// is moved to the explicit list at start, with no gap in coverage: rows
// written while btfu was down (through the old publication) and after
// (through the new one) are all restored.
func TestForAllTablesPublicationMovesToAListWithoutAGap(t *testing.T) {
	e, db := newEngine(t, "")
	stop := run(t, e)
	waitState(t, e, "streaming")
	source.Exec(t, db, `INSERT INTO t (v) SELECT 'before ' || g FROM generate_series(1, 20) g`)
	waitFor(t, func() bool {
		st, err := e.Status(context.Background())
		return err == nil && st.Sources[0].FlushedLSN != "0/0" && lsnOf(st.Sources[0].FlushedLSN) >= source.CurrentLSN(t)-1
	}, "capture of the first rows")
	stop()
	// What an older btfu left: FOR ALL TABLES.
	// (as btfu's own statement: the capture trigger leaves it alone)
	source.Exec(t, db, `SET btfu.internal = on; BEGIN; DROP PUBLICATION btfu_app; CREATE PUBLICATION btfu_app FOR ALL TABLES; COMMIT`)
	source.Exec(t, db, `INSERT INTO t (v) SELECT 'while down ' || g FROM generate_series(1, 20) g`)
	source.Exec(t, db, `CREATE TABLE k2 (id int PRIMARY KEY)`)
	source.Exec(t, db, `INSERT INTO k2 VALUES (1), (2)`)

	// A writer keeps going across the restart.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		conn, err := pgx.Connect(ctx, source.DSN(db))
		if err != nil {
			return
		}
		defer conn.Close(context.Background())
		for i := 0; ctx.Err() == nil; i++ {
			for _, q := range []string{`INSERT INTO t (v) VALUES ('` + fmt.Sprint("during ", i) + `')`, `UPDATE k2 SET id = id`} {
				if _, err := conn.Exec(ctx, q); err != nil && ctx.Err() == nil {
					t.Errorf("writer: %v", err)
					return
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	run(t, e)
	waitState(t, e, "streaming")
	if all := pgtest.QueryValue[bool](t, source, db, `SELECT puballtables FROM pg_publication WHERE pubname = 'btfu_app'`); all {
		t.Fatal("still FOR ALL TABLES")
	}
	source.Exec(t, db, `CREATE TABLE nokey2 (a int); INSERT INTO nokey2 VALUES (1); UPDATE nokey2 SET a = 2`)
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	source.Exec(t, db, `INSERT INTO t (v) VALUES ('last')`)
	mark := source.CurrentLSN(t)
	want := tableHashes(t, source, db)
	target, _ := restoreAt(t, e, mark)
	got := tableHashes(t, source, target)
	for _, tbl := range []string{"public.t", "public.k2"} {
		if got[tbl] != want[tbl] {
			t.Errorf("%s restored %s, source held %s (%d rows)", tbl, got[tbl], want[tbl], pgtest.QueryValue[int64](t, source, db, "SELECT count(*) FROM "+tbl))
		}
	}
}

func lsnOf(s string) pglogrepl.LSN {
	l, _ := pglogrepl.ParseLSN(s)
	return l
}

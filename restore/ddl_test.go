package restore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/internal/pgtest"
)

// Captured DDL replays in the order the source ran it, once, and never
// runs a statement's query again: a table created in a subtransaction
// before the rows of the next one, CREATE TABLE AS and SELECT INTO (rows
// from their own messages, not doubled), materialized views created and
// refreshed, an enum value used after it was added, CREATE INDEX
// CONCURRENTLY, and commands on temporary tables of two sessions with the
// same name, which stay on the source (DESIGN 5).
func TestCapturedDDLReplaysInOrderOnce(t *testing.T) {
	e := capturingConf(t, nil, "", `tables_without_key = "replica_identity_full"`)
	src := func(sql string) { t.Helper(); source.Exec(t, e.db, sql) }

	src(`CREATE FUNCTION noop() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$`)
	// Two sessions with temporary tables of the same name, and objects
	// on them without a schema of their own.
	s1, s2 := source.Connect(t, e.db), source.Connect(t, e.db)
	for i, conn := range []*pgx.Conn{s1, s2} {
		for _, sql := range []string{
			"CREATE TEMP TABLE scratch (a int PRIMARY KEY, b text)",
			fmt.Sprintf("INSERT INTO scratch VALUES (%d, 'x')", i),
			"CREATE INDEX ON scratch (b)",
			"ALTER TABLE scratch ADD COLUMN c int",
			"CREATE TEMP VIEW scratch_v AS SELECT * FROM scratch",
			"CREATE TRIGGER scratch_t BEFORE INSERT ON scratch FOR EACH ROW EXECUTE FUNCTION noop()",
			"CREATE POLICY scratch_p ON scratch USING (a > 0)",
			"CREATE RULE scratch_r AS ON DELETE TO scratch_v DO INSTEAD NOTHING",
			// in a permanent schema, but gone with the session (its type is)
			"CREATE FUNCTION scratch_f(s scratch) RETURNS int LANGUAGE sql AS 'SELECT 1'",
			"DROP RULE scratch_r ON scratch_v",
			"GRANT SELECT ON scratch TO PUBLIC", // names no object; a bare name means the temporary table
		} {
			execOn(t, conn, sql)
		}
	}

	src(`BEGIN;
		SAVEPOINT one;
		CREATE TABLE sp (a int PRIMARY KEY);
		SAVEPOINT two;
		INSERT INTO sp VALUES (1);
		RELEASE SAVEPOINT two;
		INSERT INTO sp VALUES (2);
		COMMIT`)
	src(`CREATE TABLE ser (id serial PRIMARY KEY, note text DEFAULT 'n'); INSERT INTO ser(note) SELECT 'r' || g FROM generate_series(1, 5) g`)
	// A permanent table LIKE a temporary one: its text fails on the
	// target, the table comes from the source's catalog.
	execOn(t, s1, `CREATE TABLE liked (LIKE scratch INCLUDING ALL, extra serial)`)
	src(`INSERT INTO liked(a, b) VALUES (1, 'x'), (2, 'y')`)
	// DDL run as a replica (bulk-load and migration tools do) is captured.
	src(`SET session_replication_role = replica; CREATE TABLE repl_made (id int PRIMARY KEY); RESET session_replication_role`)
	src(`INSERT INTO repl_made VALUES (1), (2)`)
	// Semicolons inside a rule's actions and a BEGIN ATOMIC body.
	src(`CREATE TABLE rl (id int PRIMARY KEY); CREATE TABLE rl_log (id int PRIMARY KEY)`)
	src(`CREATE RULE rl_r AS ON DELETE TO rl DO ALSO (DELETE FROM rl_log WHERE id = old.id; DELETE FROM rl_log WHERE id = -old.id)`)
	src(`CREATE FUNCTION atomic_f(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN a > 0 THEN 1 ELSE 2 END; END`)
	src(`CREATE SCHEMA elems CREATE TABLE t1 (id serial PRIMARY KEY, v text)`)
	src(`INSERT INTO elems.t1(v) VALUES ('a'), ('b')`)
	src(`CREATE TABLE ctas AS SELECT g AS a, md5(g::text) AS b, now()::date AS d FROM generate_series(1, 2500) g`)
	src(`INSERT INTO ctas VALUES (-1, 'after', '2020-01-02'); UPDATE ctas SET b = 'changed' WHERE a = 7; DELETE FROM ctas WHERE a = 8`)
	src(`SELECT a, b INTO sel_into FROM ctas WHERE a < 50`)
	src(`CREATE TABLE one_col AS SELECT md5(g::text) AS t FROM generate_series(1, 5) g`) // a column named as the row's alias
	src(`CREATE UNLOGGED TABLE ctas_unlogged AS SELECT 1 AS a`)
	src(`CREATE MATERIALIZED VIEW mv AS SELECT count(*) AS n, sum(a) AS s FROM ctas`)
	src(`INSERT INTO ctas SELECT g, 'more', NULL FROM generate_series(3000, 3010) g; REFRESH MATERIALIZED VIEW mv`)
	src(`CREATE TYPE mood AS ENUM ('sad', 'ok'); CREATE TABLE moods (id int PRIMARY KEY, m mood)`)
	src(`ALTER TYPE mood ADD VALUE 'happy'`)
	src(`INSERT INTO moods VALUES (1, 'happy'), (2, 'sad')`)
	src(`CREATE INDEX CONCURRENTLY ctas_b ON ctas (b)`)
	// A CREATE INDEX CONCURRENTLY that fails leaves an invalid index, which
	// later statements use; ddl_command_end never fires for it.
	src(`CREATE TABLE cic_t (a int PRIMARY KEY, b int); INSERT INTO cic_t VALUES (1, 0)`)
	if _, err := s1.Exec(context.Background(), `CREATE INDEX CONCURRENTLY cic_bad ON cic_t ((a / b))`); err == nil {
		t.Fatal("CREATE INDEX CONCURRENTLY on a division by zero succeeded")
	}
	src(`COMMENT ON INDEX cic_bad IS 'invalid'`)
	// The application's sql_drop event trigger drops more.
	src(`CREATE TABLE audit_x (v text); CREATE TABLE watched (id int PRIMARY KEY)`)
	src(`CREATE FUNCTION drop_audit() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN
		IF EXISTS (SELECT 1 FROM pg_event_trigger_dropped_objects() WHERE object_identity = 'public.watched') THEN DROP TABLE IF EXISTS audit_x; END IF; END $$;
		CREATE EVENT TRIGGER drop_audit ON sql_drop EXECUTE FUNCTION drop_audit()`)
	src(`DROP TABLE watched`)
	// … and its ddl_command_end event trigger, which runs after btfu's.
	src(`CREATE TABLE audit_y (v text); CREATE FUNCTION on_create() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN
		IF EXISTS (SELECT 1 FROM pg_event_trigger_ddl_commands() WHERE object_identity = 'public.trigger_me') THEN DROP TABLE IF EXISTS audit_y; END IF; END $$;
		CREATE EVENT TRIGGER zz_on_create ON ddl_command_end WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION on_create()`)
	src(`CREATE TABLE trigger_me (id int PRIMARY KEY)`)
	// A DROP of a temporary and a permanent table at once.
	src(`CREATE TABLE gone (a int PRIMARY KEY)`)
	execOn(t, s1, "DROP TABLE scratch, gone CASCADE")
	execOn(t, s2, "DROP TABLE scratch CASCADE")

	m := e.mark(t, "after DDL")
	compare := []string{"sp", "ser", "liked", "ctas", "sel_into", "one_col", "moods", "mv", "elems.t1", "repl_made"}
	want := map[string]string{}
	for _, tbl := range compare {
		want[tbl] = tableHash(t, source, e.db, tbl)
	}
	e.waitStored(t, m)
	db, sum, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range compare {
		if got := tableHash(t, target, db, tbl); got != want[tbl] {
			t.Errorf("%s restored as %s, source held %s", tbl, got, want[tbl])
		}
	}
	if got := pgtest.QueryValue[string](t, target, db, "SELECT coalesce((SELECT string_agg(rulename, ',') FROM pg_rules WHERE tablename = 'rl'), '') || ' ' || coalesce(to_regprocedure('atomic_f(int)')::text, 'no atomic_f')"); got != "rl_r atomic_f(integer)" {
		t.Errorf("rule and BEGIN ATOMIC function restored as %q", got)
	}
	if got := pgtest.QueryValue[string](t, target, db, "SELECT coalesce((SELECT indisvalid::text || ' ' || obj_description(indexrelid) FROM pg_index WHERE indexrelid = to_regclass('cic_bad')), 'missing')"); got != "false invalid" {
		t.Errorf("the index a failed CREATE INDEX CONCURRENTLY left: %s, want an invalid index with its comment", got)
	}
	for obj, wantExists := range map[string]bool{"audit_x": false, "watched": false, "audit_y": false, "trigger_me": true, "ctas_b": true, "ctas_unlogged": true, "gone": false, "scratch": false, "scratch_v": false} {
		if got := pgtest.QueryValue[bool](t, target, db, "SELECT to_regclass($1) IS NOT NULL", obj); got != wantExists {
			t.Errorf("%s exists in the restore: %v, want %v", obj, got, wantExists)
		}
	}
	// Ten statements per session, and the second session's DROP.
	if sum.TempDDL != 21 {
		t.Errorf("%d statements on temporary objects left alone, want 21", sum.TempDDL)
	}
	if len(sum.SkippedDDL) != 0 {
		t.Errorf("skipped DDL: %v", sum.SkippedDDL)
	}
	// Tables created by the statement (also within CREATE SCHEMA) are
	// covered from their first row: none is left out of this restore but
	// the UNLOGGED one, once the periodic check has seen it.
	for _, l := range sum.LeftOut {
		if !strings.HasPrefix(l, "public.ctas_unlogged: ") {
			t.Errorf("left out: %s", l)
		}
	}
}

// A temporary table made before a base backup and dropped after it is not
// in the base: its DROP is left alone, not a failure.
func TestDropOfTemporaryTableFromBeforeTheBase(t *testing.T) {
	e := capturing(t)
	ctx := context.Background()
	s1 := source.Connect(t, e.db)
	execOn(t, s1, "CREATE TEMP TABLE t3 (a int)")
	base, err := e.w.BackupNow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	execOn(t, s1, "DROP TABLE t3")
	source.Exec(t, e.db, "INSERT INTO items(name, qty) VALUES ('after the drop', 2)")
	m := e.mark(t, "after drop")
	e.waitStored(t, m)
	db, sum, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Base.ArtifactKey != base.ArtifactKey {
		t.Fatalf("restored from base backup %s; the test needs %s, taken after CREATE TEMP TABLE", sum.Base.ArtifactKey, base.ArtifactKey)
	}
	if got := contentHash(t, target, db)["items"]; got != m.hash["items"] {
		t.Errorf("items differs from the source")
	}
}

// Captured DDL that fails on the target stops the restore with its LSN and
// text; --on-ddl-error=skip goes on and lists it.
func TestFailingDDLStopsOrIsSkipped(t *testing.T) {
	e := capturing(t)
	role := "btfu_only_on_source_" + e.db
	source.Exec(t, "postgres", "CREATE ROLE "+role)
	t.Cleanup(func() { source.Exec(t, e.db, "DROP OWNED BY "+role); source.Exec(t, "postgres", "DROP ROLE "+role) })
	source.Exec(t, e.db, "GRANT SELECT ON items TO "+role)
	source.Exec(t, e.db, "INSERT INTO items(name, qty) VALUES ('after the grant', 3)")
	m := e.mark(t, "after grant")
	e.waitStored(t, m)
	_, _, err := e.restore(t, Target{LSN: m.lsn})
	var re *ReplayError
	if !errors.As(err, &re) {
		t.Fatalf("restore with a GRANT to a role the target lacks: %v, want a replay error", err)
	}
	for _, want := range []string{"GRANT SELECT ON items TO " + role, "does not exist", "--on-ddl-error=skip", re.LSN.String()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %q", err, want)
		}
	}

	plan, err := MakePlan(context.Background(), e.meta, e.id, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	db := target.CreateDB(t)
	sum, err := Run(context.Background(), e.meta, e.arts, e.id, plan, Options{TargetDSN: target.DSN(db), OnDDLError: DDLErrorSkip})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.SkippedDDL) != 1 || !strings.Contains(sum.SkippedDDL[0].String(), "GRANT SELECT ON items TO "+role) {
		t.Errorf("skipped DDL %v, want the GRANT", sum.SkippedDDL)
	}
	if got := contentHash(t, target, db)["items"]; got != m.hash["items"] {
		t.Errorf("items differs from the source after skipping the GRANT")
	}
}

// execOn runs sql in one session of the source.
func execOn(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// Triggers and event triggers set ENABLE ALWAYS fire under
// session_replication_role = replica, and ENABLE REPLICA ones fire only
// then: replay keeps them quiet (their effects are in the stream, or never
// happened on the source) and gives the restore the source's trigger
// states, also where replayed DDL changed them (DESIGN 4.5).
func TestTriggersThatFireInReplicaModeStayQuiet(t *testing.T) {
	e := capturingConf(t, nil, `
CREATE TABLE log (id serial PRIMARY KEY, what text);
CREATE FUNCTION log_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO log(what) VALUES (TG_TABLE_NAME || ' ' || TG_OP); RETURN NEW; END $$;
CREATE FUNCTION log_ddl() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO log(what) VALUES ('ddl ' || tg_tag); END $$;
CREATE TABLE a (id int PRIMARY KEY);
CREATE TABLE b (id int PRIMARY KEY);
CREATE TRIGGER ta AFTER INSERT ON a FOR EACH ROW EXECUTE FUNCTION log_row();
CREATE TRIGGER tb AFTER INSERT ON b FOR EACH ROW EXECUTE FUNCTION log_row();
ALTER TABLE a ENABLE ALWAYS TRIGGER ta;
ALTER TABLE b ENABLE REPLICA TRIGGER tb;
CREATE EVENT TRIGGER log_ddl ON ddl_command_end WHEN TAG IN ('CREATE TABLE') EXECUTE FUNCTION log_ddl();
ALTER EVENT TRIGGER log_ddl ENABLE ALWAYS;
CREATE RULE b_log AS ON INSERT TO b DO ALSO INSERT INTO log(what) VALUES ('rule ' || new.id);
ALTER TABLE b ENABLE ALWAYS RULE b_log;`, "")
	t.Cleanup(func() { source.Exec(t, e.db, "DROP EVENT TRIGGER IF EXISTS log_ddl") })
	src := func(sql string) { t.Helper(); source.Exec(t, e.db, sql) }
	src("INSERT INTO a VALUES (1), (2); INSERT INTO b VALUES (1)")
	src("CREATE TABLE c (id int PRIMARY KEY)")
	src("CREATE TRIGGER tc AFTER INSERT ON c FOR EACH ROW EXECUTE FUNCTION log_row()")
	src("ALTER TABLE c ENABLE ALWAYS TRIGGER tc")
	src("INSERT INTO c VALUES (1)")
	src("ALTER TABLE a DISABLE TRIGGER ta")
	src("INSERT INTO a VALUES (3); INSERT INTO b VALUES (2)")
	src("ALTER TABLE b DISABLE RULE b_log")
	src("INSERT INTO b VALUES (3)")
	m := e.mark(t, "triggers")
	states := `SELECT string_agg(x, ' ' ORDER BY x) FROM (SELECT tgname || '=' || tgenabled::text AS x FROM pg_trigger WHERE NOT tgisinternal
		UNION ALL SELECT evtname || '=' || evtenabled::text FROM pg_event_trigger WHERE evtname NOT LIKE 'btfu%'
		UNION ALL SELECT rulename || '=' || ev_enabled::text FROM pg_rewrite WHERE rulename <> '_RETURN' AND ev_class >= 16384) s`
	wantStates := pgtest.QueryValue[string](t, source, e.db, states)
	want := map[string]string{}
	for _, tbl := range []string{"log", "a", "b", "c"} {
		want[tbl] = tableHash(t, source, e.db, tbl)
	}
	e.waitStored(t, m)
	db, _, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Exec(t, db, "DROP EVENT TRIGGER IF EXISTS log_ddl") })
	for tbl, h := range want {
		if got := tableHash(t, target, db, tbl); got != h {
			t.Errorf("%s restored as %s, source held %s", tbl, got, h)
		}
	}
	if got := pgtest.QueryValue[string](t, target, db, states); got != wantStates {
		t.Errorf("trigger states restored as %q, source has %q", got, wantStates)
	}
}

// A DROP of several schemas under an application's sql_drop event trigger
// that drops more (corpus event_trigger.sql): the trigger's own DROP TABLE
// reports, at its end, what the outer DROP had dropped until then, and
// the outer statement's message then comes with nothing. Replay drops
// everything once and the outer statement does not fail on what is gone.
func TestDropUnderAnEventTriggerThatDropsMore(t *testing.T) {
	e := capturing(t)
	src := func(sql string) { t.Helper(); source.Exec(t, e.db, sql) }
	src(`CREATE SCHEMA audit_tbls; CREATE SCHEMA schema_one; CREATE SCHEMA schema_two;
		CREATE TABLE schema_one.table_one (a int PRIMARY KEY); CREATE TABLE schema_one."table two" (a int PRIMARY KEY);
		CREATE TABLE schema_two.table_three (a int PRIMARY KEY, b text);
		CREATE TABLE audit_tbls.schema_two_table_three (the_value text PRIMARY KEY);
		CREATE FUNCTION schema_two.add(int, int) RETURNS int LANGUAGE sql AS 'SELECT $1 + $2';
		CREATE TABLE dropped_log (n serial PRIMARY KEY, object_identity text)`)
	src(`CREATE FUNCTION drop_more() RETURNS event_trigger LANGUAGE plpgsql AS $$
		DECLARE obj record;
		BEGIN
			FOR obj IN SELECT * FROM pg_event_trigger_dropped_objects() LOOP
				IF obj.object_type = 'table' THEN
					EXECUTE format('DROP TABLE IF EXISTS audit_tbls.%I', format('%s_%s', obj.schema_name, obj.object_name));
				END IF;
				INSERT INTO dropped_log (object_identity) VALUES (obj.object_identity);
			END LOOP;
		END $$;
		CREATE EVENT TRIGGER regress_drop_more ON sql_drop WHEN TAG IN ('DROP SCHEMA', 'DROP TABLE') EXECUTE FUNCTION drop_more()`)
	t.Cleanup(func() { source.Exec(t, e.db, "DROP EVENT TRIGGER IF EXISTS regress_drop_more") })
	src(`DROP SCHEMA schema_one, schema_two CASCADE`)
	src(`INSERT INTO items(name, qty) VALUES ('after', 1)`)
	m := e.mark(t, "after the drop")
	e.waitStored(t, m)
	db, sum, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.SkippedDDL) > 0 {
		t.Errorf("skipped: %v", sum.SkippedDDL)
	}
	if got := pgtest.QueryValue[string](t, target, db, `SELECT coalesce(string_agg(nspname, ','), '') FROM pg_namespace WHERE nspname IN ('schema_one', 'schema_two')`); got != "" {
		t.Errorf("schemas left in the restore: %s", got)
	}
	if got := pgtest.QueryValue[bool](t, target, db, `SELECT to_regclass('audit_tbls.schema_two_table_three') IS NULL`); !got {
		t.Error("the table the event trigger dropped is still in the restore")
	}
	for _, tbl := range []string{"items", "dropped_log"} {
		if got, want := tableHash(t, target, db, tbl), tableHash(t, source, e.db, tbl); got != want {
			t.Errorf("%s restored as %s, source held %s", tbl, got, want)
		}
	}
}

// A materialized view made under EXPLAIN ANALYZE, where no event trigger
// fires (corpus matview.sql): its REFRESH carries the view's definition,
// which replay makes where the target lacks the view, so the REFRESH and
// what follows it replay. A materialized view made with column names in
// a DO block comes back with those names.
func TestRefreshOfAMaterializedViewCaptureDidNotSee(t *testing.T) {
	e := capturing(t)
	src := func(sql string) { t.Helper(); source.Exec(t, e.db, sql) }
	src(`CREATE TABLE mv_src (id int PRIMARY KEY, v int); INSERT INTO mv_src SELECT g, g * 2 FROM generate_series(1, 10) g`)
	src(`EXPLAIN (ANALYZE, COSTS OFF, SUMMARY OFF, TIMING OFF) CREATE MATERIALIZED VIEW mv_unseen (a, b) AS SELECT id, v FROM mv_src WHERE id <= 5 WITH DATA`)
	src(`INSERT INTO mv_src VALUES (0, 0)`)
	src(`REFRESH MATERIALIZED VIEW mv_unseen`)
	src(`CREATE UNIQUE INDEX mv_unseen_a ON mv_unseen (a)`)
	src(`INSERT INTO mv_src VALUES (-1, -2)`)
	src(`REFRESH MATERIALIZED VIEW CONCURRENTLY mv_unseen`)
	src(`DO $$ BEGIN EXECUTE 'CREATE MATERIALIZED VIEW mv_named (x, y) AS SELECT id, v FROM mv_src WHERE id > 8'; END $$`)
	m := e.mark(t, "after the views")
	e.waitStored(t, m)
	db, sum, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.SkippedDDL) > 0 {
		t.Errorf("skipped: %v", sum.SkippedDDL)
	}
	for _, q := range []string{
		"SELECT coalesce(string_agg(a || ':' || b, ',' ORDER BY a), '') FROM mv_unseen",
		"SELECT coalesce(string_agg(x || ':' || y, ',' ORDER BY x), '') FROM mv_named",
		"SELECT count(*)::text FROM pg_indexes WHERE indexname = 'mv_unseen_a'",
	} {
		if got, want := pgtest.QueryValue[string](t, target, db, q), pgtest.QueryValue[string](t, source, e.db, q); got != want {
			t.Errorf("%s: restore %q, source %q", q, got, want)
		}
	}
	if !slices.ContainsFunc(sum.Notes, func(n string) bool { return strings.Contains(n, "REFRESH MATERIALIZED VIEW") }) {
		t.Errorf("no note on the rebuilt REFRESH: %q", sum.Notes)
	}
}

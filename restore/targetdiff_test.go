package restore

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/btfu/btfu/internal/pgtest"
)

// The target is another cluster: roles and tablespaces of the source's
// cluster may be missing there. Replay does what the base backup's
// pg_restore --no-owner does for owners (ALTER … OWNER TO left out, CREATE
// SCHEMA … AUTHORIZATION without the role), puts objects of a missing
// tablespace in the default one and says so, and drops what a DROP named
// object by object, IF EXISTS, so a table the target never held (made by
// EXPLAIN ANALYZE CREATE TABLE AS, which fires no event trigger) does not
// stop the restore.
func TestTargetWithoutTheSourcesRolesAndTablespaces(t *testing.T) {
	e := capturing(t)
	role := "src_only_" + e.db
	ts := "ts_" + e.db
	dir := filepath.Join(source.BaseDir, ts)
	source.Exec(t, "postgres", "CREATE ROLE "+role)
	source.Exec(t, "postgres", fmt.Sprintf("COPY (SELECT) TO PROGRAM 'mkdir -p %s'", dir))
	source.Exec(t, "postgres", fmt.Sprintf("CREATE TABLESPACE %s LOCATION '%s'", ts, dir))
	t.Cleanup(func() {
		source.Exec(t, e.db, "DROP OWNED BY "+role+" CASCADE; DROP TABLE IF EXISTS in_ts; ALTER TABLE items SET TABLESPACE pg_default")
		source.Exec(t, "postgres", "DROP TABLESPACE IF EXISTS "+ts)
		source.Exec(t, "postgres", "DROP ROLE IF EXISTS "+role)
	})
	src := func(sql string) { t.Helper(); source.Exec(t, e.db, sql) }
	src("ALTER TABLE tags OWNER TO " + role)
	src("CREATE SCHEMA named_auth AUTHORIZATION " + role + " CREATE TABLE t1 (id int PRIMARY KEY)")
	src("CREATE SCHEMA AUTHORIZATION " + role)
	src("CREATE TABLE " + role + ".t2 (id int PRIMARY KEY); INSERT INTO " + role + ".t2 VALUES (1); INSERT INTO named_auth.t1 VALUES (1)")
	src("CREATE TABLE in_ts (id int PRIMARY KEY, v text) TABLESPACE " + ts)
	src("CREATE INDEX in_ts_v ON in_ts (v) TABLESPACE " + ts)
	src("ALTER TABLE in_ts ADD CONSTRAINT in_ts_v_key UNIQUE (v) USING INDEX TABLESPACE " + ts)
	src("ALTER TABLE items SET TABLESPACE " + ts)
	src("INSERT INTO in_ts VALUES (1, 'a'), (2, 'b'); INSERT INTO items(name, qty) VALUES ('moved', 7)")
	// DROP OWNED BY a role the target lacks drops its objects there too.
	source.Exec(t, "postgres", "CREATE ROLE "+role+"_2")
	t.Cleanup(func() { source.Exec(t, "postgres", "DROP ROLE IF EXISTS "+role+"_2") })
	src("CREATE TABLE owned_x (id int PRIMARY KEY); ALTER TABLE owned_x OWNER TO " + role + "_2")
	// … also when an event trigger of the application's drops more inside
	// it (its DROP reaches ddl_command_end first).
	src(`CREATE TABLE side_x (v text); CREATE FUNCTION drop_side() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN DROP TABLE IF EXISTS side_x; END $$;
		CREATE EVENT TRIGGER drop_side ON sql_drop WHEN TAG IN ('DROP OWNED') EXECUTE FUNCTION drop_side()`)
	src("DROP OWNED BY " + role + "_2")
	src("EXPLAIN ANALYZE CREATE TABLE easi AS SELECT 1 AS a")
	src("DROP TABLE easi")
	m := e.mark(t, "after")
	want := map[string]string{}
	tables := []string{"in_ts", "items", "named_auth.t1", role + ".t2"}
	for _, tbl := range tables {
		want[tbl] = tableHash(t, source, e.db, tbl)
	}
	e.waitStored(t, m)
	db, sum, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range tables {
		if got := tableHash(t, target, db, tbl); got != want[tbl] {
			t.Errorf("%s restored as %s, source held %s", tbl, got, want[tbl])
		}
	}
	if got := pgtest.QueryValue[int64](t, target, db, "SELECT count(*) FROM pg_indexes WHERE indexname IN ('in_ts_v', 'in_ts_v_key')"); got != 2 {
		t.Errorf("%d of the 2 indexes made in the missing tablespace restored", got)
	}
	// Each names a role the target lacks: two ALTER … OWNER TO, two
	// CREATE SCHEMA … AUTHORIZATION (made without it), DROP OWNED BY (its
	// objects dropped one by one).
	if sum.OwnerChanges != 5 {
		t.Errorf("%d statements about owners left out, want 5", sum.OwnerChanges)
	}
	if pgtest.QueryValue[bool](t, target, db, "SELECT to_regclass('owned_x') IS NOT NULL OR to_regclass('side_x') IS NOT NULL") {
		t.Error("owned_x or side_x, dropped by DROP OWNED BY, is in the restore")
	}
	if notes := strings.Join(sum.Notes, "\n"); !strings.Contains(notes, `tablespace "`+ts+`" does not exist`) {
		t.Errorf("notes do not say the tablespace was missing: %q", notes)
	}
	if len(sum.SkippedDDL) > 0 {
		t.Errorf("skipped: %v", sum.SkippedDDL)
	}
}

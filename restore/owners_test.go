package restore

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/btfu/btfu/internal/pgtest"
)

// Owners come back: the base backup is restored with its owners and each
// captured statement runs as the role that ran it on the source, so what
// depends on the owner or on current_user comes out the same: row-level
// security (an owner is exempt), an index whose function checks
// current_user (an index is built as its table's owner), a user mapping
// FOR current_user. A target without a role that owns the backup's
// objects is refused before anything is written, and --no-owner restores
// there, as the restoring role.
func TestOwnersAndRolesReplay(t *testing.T) {
	e := capturing(t)
	role, other := "own_"+e.db, "own2_"+e.db
	for _, c := range []*pgtest.Cluster{source, target} {
		c.Exec(t, "postgres", "CREATE ROLE "+role)
	}
	source.Exec(t, "postgres", "CREATE ROLE "+other)
	t.Cleanup(func() {
		source.Exec(t, e.db, "DROP OWNED BY "+role+", "+other+" CASCADE")
		source.Exec(t, "postgres", "DROP ROLE "+role)
		source.Exec(t, "postgres", "DROP ROLE "+other)
		target.Exec(t, "postgres", "DROP ROLE "+role)
	})
	src := func(sql string) { t.Helper(); source.Exec(t, e.db, sql) }
	src(`CREATE FOREIGN DATA WRAPPER dummy_` + e.db + `; CREATE SERVER srv FOREIGN DATA WRAPPER dummy_` + e.db + `;
		GRANT USAGE ON FOREIGN SERVER srv TO ` + role + `; GRANT CREATE ON SCHEMA public TO ` + role)
	t.Cleanup(func() {
		source.Exec(t, e.db, "DROP SERVER IF EXISTS srv CASCADE; DROP FOREIGN DATA WRAPPER IF EXISTS dummy_"+e.db)
	})
	src(`SET ROLE ` + role + `;
		CREATE TABLE made (id int PRIMARY KEY, v text);
		INSERT INTO made VALUES (1, 'a'), (2, 'b');
		CREATE FUNCTION as_owner(int) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$ BEGIN ASSERT current_user = '` + role + `', 'called by ' || current_user; RETURN $1; END $$;
		CREATE INDEX made_owner ON made (as_owner(id));
		ALTER TABLE made ENABLE ROW LEVEL SECURITY; CREATE POLICY nobody ON made USING (false);
		CREATE USER MAPPING FOR current_user SERVER srv;
		RESET ROLE`)
	m := e.mark(t, "owners")
	want := tableHash(t, source, e.db, "made")
	e.waitStored(t, m)
	db, sum, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	if got := tableHash(t, target, db, "made"); got != want {
		t.Errorf("made restored as %s, source held %s", got, want)
	}
	owners := `SELECT (SELECT relowner::regrole::text FROM pg_class WHERE oid = 'made'::regclass) || ' ' ||
		(SELECT proowner::regrole::text FROM pg_proc WHERE proname = 'as_owner') || ' ' ||
		coalesce((SELECT usename FROM pg_user_mappings WHERE srvname = 'srv'), 'no mapping') || ' ' ||
		(SELECT count(*) FROM pg_indexes WHERE indexname = 'made_owner')`
	if got, want := pgtest.QueryValue[string](t, target, db, owners), role+" "+role+" "+role+" 1"; got != want {
		t.Errorf("owners in the restore: %q, want %q", got, want)
	}
	if len(sum.SkippedDDL) > 0 || len(sum.Notes) > 0 {
		t.Errorf("skipped %v, notes %v", sum.SkippedDDL, sum.Notes)
	}

	// A role the target lacks owns part of the next base backup. (The
	// index above cannot be built but as its owner: --no-owner could not
	// restore it, nor could pg_restore --no-owner.)
	src(`DROP INDEX made_owner; CREATE TABLE theirs (id int PRIMARY KEY); ALTER TABLE theirs OWNER TO ` + other)
	if _, err := e.w.BackupNow(context.Background()); err != nil {
		t.Fatal(err)
	}
	m = e.mark(t, "their base")
	e.waitStored(t, m)
	plan, err := MakePlan(context.Background(), e.meta, e.id, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	refused := target.CreateDB(t)
	_, err = Run(context.Background(), e.meta, e.arts, e.id, plan, Options{TargetDSN: target.DSN(refused)})
	if !errors.Is(err, ErrMissingRoles) || !strings.Contains(err.Error(), other) || !strings.Contains(err.Error(), "--no-owner") {
		t.Fatalf("restore to a target without %s: %v", other, err)
	}
	if n := pgtest.QueryValue[int64](t, target, refused, "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"); n != 0 {
		t.Errorf("the refused target holds %d relations", n)
	}
	noOwner := target.CreateDB(t)
	if _, err := Run(context.Background(), e.meta, e.arts, e.id, plan, Options{TargetDSN: target.DSN(noOwner), NoOwner: true}); err != nil {
		t.Fatalf("--no-owner: %v", err)
	}
	if got := pgtest.QueryValue[string](t, target, noOwner, "SELECT relowner::regrole::text FROM pg_class WHERE oid = 'theirs'::regclass"); got != "postgres" {
		t.Errorf("--no-owner: theirs owned by %s", got)
	}
}

// A role the target has by name but without what the source's had (made
// by hand without SUPERUSER or CREATEDB, as the corpus makes the suite's
// roles): statements the source ran as it that it may not run on the
// target run as the restoring role, noted, instead of being skipped with
// everything that depends on them.
func TestRoleWithoutTheSourcesPrivilegesOnTheTarget(t *testing.T) {
	e := capturing(t)
	role := "weak_" + e.db
	source.Exec(t, "postgres", "CREATE ROLE "+role+" SUPERUSER")
	target.Exec(t, "postgres", "CREATE ROLE "+role)
	t.Cleanup(func() {
		source.Exec(t, e.db, "DROP OWNED BY "+role+" CASCADE; DROP SERVER IF EXISTS weak_srv CASCADE; DROP FOREIGN DATA WRAPPER IF EXISTS weak_fdw_"+e.db)
		source.Exec(t, "postgres", "DROP ROLE "+role)
		target.Exec(t, "postgres", "DROP ROLE "+role)
	})
	conn := source.Connect(t, e.db)
	execOn(t, conn, "SET SESSION AUTHORIZATION "+role)
	execOn(t, conn, "CREATE SCHEMA weak_s")
	execOn(t, conn, "CREATE TABLE weak_s.t (id int PRIMARY KEY, v text)")
	execOn(t, conn, "INSERT INTO weak_s.t VALUES (1, 'a'), (2, 'b')")
	execOn(t, conn, "ALTER TABLE weak_s.t ADD COLUMN w int DEFAULT 7")
	execOn(t, conn, "UPDATE weak_s.t SET v = 'c' WHERE id = 2")
	execOn(t, conn, "CREATE SCHEMA AUTHORIZATION CURRENT_ROLE CREATE TABLE "+role+".tab (id int PRIMARY KEY)")
	execOn(t, conn, "CREATE FOREIGN DATA WRAPPER weak_fdw_"+e.db+"; CREATE SERVER weak_srv FOREIGN DATA WRAPPER weak_fdw_"+e.db)
	execOn(t, conn, "CREATE USER MAPPING FOR current_user SERVER weak_srv OPTIONS (a '1')")
	execOn(t, conn, "ALTER USER MAPPING FOR current_user SERVER weak_srv OPTIONS (SET a '2')")
	m := e.mark(t, "weak role")
	want := tableHash(t, source, e.db, "weak_s.t")
	e.waitStored(t, m)
	db, sum, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.SkippedDDL) > 0 {
		t.Errorf("skipped: %v", sum.SkippedDDL)
	}
	if got := tableHash(t, target, db, "weak_s.t"); got != want {
		t.Errorf("weak_s.t restored as %s, source held %s", got, want)
	}
	// CURRENT_ROLE still meant the source's role.
	got := pgtest.QueryValue[string](t, target, db, `SELECT (SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1) || ' ' ||
		coalesce((SELECT usename || ' ' || array_to_string(umoptions, ',') FROM pg_user_mappings WHERE srvname = 'weak_srv'), 'no mapping')`, role)
	if want := role + " " + role + " a=2"; got != want {
		t.Errorf("schema owner and user mapping: %q, want %q", got, want)
	}
	if !slices.ContainsFunc(sum.Notes, func(n string) bool { return strings.Contains(n, role) && strings.Contains(n, "restoring role") }) {
		t.Errorf("no note on %s: %q", role, sum.Notes)
	}
}

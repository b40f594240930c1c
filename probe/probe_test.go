package probe

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/sourcedb"
)

var source *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &source)) }

// sourceFor builds a configured source the way config.toml would.
func sourceFor(t *testing.T, dsn string, extra string) *config.Source {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(fmt.Sprintf("[[source]]\nname = \"app\"\ndsn = %q\n%s\n", dsn, extra)))
	if err != nil {
		t.Fatal(err)
	}
	return &cfg.Sources[0]
}

// register registers src as btfu does after a probe: refused when a check
// failed, else what the plan announced.
func register(ctx context.Context, src *config.Source, r *Report) (*sourcedb.Registration, error) {
	if err := r.Registrable(src.Name); err != nil {
		return nil, err
	}
	return sourcedb.Register(ctx, src, &r.Plan, r.Tables)
}

func run(t *testing.T, src *config.Source) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := Run(ctx, src, Options{WALSample: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustCheck(t *testing.T, r *Report, id string, want Status) Check {
	t.Helper()
	c, ok := r.Check(id)
	if !ok {
		t.Fatalf("no check %q in %+v", id, r.Checks)
	}
	if c.Status != want {
		t.Fatalf("check %s = %s (%s; fix: %s), want %s", id, c.Status, c.Finding, c.Fix, want)
	}
	return c
}

func TestEveryCheckHasAFinding(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE orders(id serial PRIMARY KEY, note text);
		CREATE TABLE parted(id int, k int, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
		CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
		CREATE TABLE gen(id int PRIMARY KEY, a int, b int GENERATED ALWAYS AS (a * 2) STORED);
		CREATE UNLOGGED TABLE scratch(id int PRIMARY KEY);
		SELECT lo_create(0);`)
	r := run(t, sourceFor(t, source.DSN(db), ""))
	want := []string{"server_version", "standby", "tls", "wal_level", "role", "replication", "pooler", "slots", "tables",
		"replica_identity", "unlogged", "partitioned", "generated_columns", "publication", "publication_existing",
		"ddl_capture", "slot", "existing_slots", "large_objects", "sequences", "extensions", "pg_dump", "wal_budget"}
	for _, id := range want {
		c, ok := r.Check(id)
		if !ok {
			t.Errorf("missing check %s", id)
			continue
		}
		if c.Finding == "" {
			t.Errorf("check %s has no finding", id)
		}
	}
	if r.Failed() {
		t.Fatalf("a healthy superuser source should pass: %s", r.FailedChecks())
	}
	mustCheck(t, r, "unlogged", Warn)
	mustCheck(t, r, "large_objects", Warn)
	if r.Plan.PublicationForm != sourcedb.FormTableList || !r.Plan.DDLCapture || r.Plan.ViaPartitionRoot || r.Plan.ProtocolVersion != 2 {
		t.Fatalf("superuser plan: %+v", r.Plan)
	}
	if r.SystemIdentifier == "" || r.Provider != ProviderSelfHosted {
		t.Fatalf("identity/provider: %q %q", r.SystemIdentifier, r.Provider)
	}
}

func TestWALLevelReplicaFailsWithHint(t *testing.T) {
	c, err := pgtest.Start(pgtest.Options{WALLevel: "replica"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	r := run(t, sourceFor(t, c.DSN("postgres"), ""))
	chk := mustCheck(t, r, "wal_level", Fail)
	if !strings.Contains(chk.Finding, "wal_level = replica") || !strings.Contains(chk.Fix, "wal_level = logical") {
		t.Fatalf("finding %q fix %q", chk.Finding, chk.Fix)
	}
}

func TestRoleWithoutReplicationFails(t *testing.T) {
	db := source.CreateDB(t)
	role := "norepl_" + db
	source.Exec(t, db, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD 'pw-norepl-1'; GRANT ALL ON DATABASE %s TO %s`, role, db, role))
	dropRoleAtEnd(t, db, role)
	r := run(t, sourceFor(t, source.DSNFor(role, "pw-norepl-1", db), ""))
	mustCheck(t, r, "role", Fail)
	chk := mustCheck(t, r, "replication", Fail)
	if !strings.Contains(chk.Fix, "REPLICATION") {
		t.Fatalf("fix %q", chk.Fix)
	}
	for _, c := range r.Checks {
		if strings.Contains(c.Finding+c.Fix+strings.Join(c.Details, " "), "pw-norepl-1") {
			t.Fatalf("password in check %s", c.ID)
		}
	}
}

// A REPLICATION role that owns its tables but is not superuser gets the
// explicit-list plan and no DDL capture.
func TestNonSuperuserGetsExplicitList(t *testing.T) {
	db := source.CreateDB(t)
	role := "repl_" + db
	source.Exec(t, db, fmt.Sprintf(`CREATE ROLE %s LOGIN REPLICATION PASSWORD 'pw-repl-2';
		GRANT CREATE ON DATABASE %s TO %s; GRANT CREATE ON SCHEMA public TO %s;
		SET ROLE %s; CREATE TABLE a(id int PRIMARY KEY); CREATE TABLE b(id int PRIMARY KEY); RESET ROLE;`, role, db, role, role, role))
	dropRoleAtEnd(t, db, role)
	src := sourceFor(t, source.DSNFor(role, "pw-repl-2", db), "")
	r := run(t, src)
	if r.Failed() {
		t.Fatalf("failed: %s", r.FailedChecks())
	}
	mustCheck(t, r, "role", OK)
	mustCheck(t, r, "replication", OK)
	if r.Plan.PublicationForm != sourcedb.FormTableList || r.Plan.DDLCapture {
		t.Fatalf("plan %+v", r.Plan)
	}
	if strings.Join(r.Plan.Tables, ",") != "public.a,public.b" {
		t.Fatalf("tables %v", r.Plan.Tables)
	}
	g, err := register(context.Background(), src, r)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Created) != 1 {
		t.Fatalf("created %v", g.Created)
	}
	got := pgtest.QueryValue[string](t, source, db, `SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = 'btfu_app'`)
	if got != "a,b" {
		t.Fatalf("published %q", got)
	}
	// A table created later is added to the explicit list on re-registration.
	source.Exec(t, db, "SET ROLE "+role+"; CREATE TABLE c(id int PRIMARY KEY)")
	g, err = register(context.Background(), src, run(t, src))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Altered) != 1 || !strings.Contains(g.Altered[0], "public.c") {
		t.Fatalf("altered %v", g.Altered)
	}
}

// A table without a usable replica identity is never published as it is:
// by default it is left out, loudly; the config may exclude it or have
// btfu set REPLICA IDENTITY FULL on it (by name or for every such table).
func TestTableWithoutKeyIsLeftOutOrSetFull(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE keyed(id int PRIMARY KEY); CREATE TABLE log(at timestamptz, msg text); INSERT INTO log VALUES (now(), 'x');
		CREATE TABLE parent(id int PRIMARY KEY); CREATE TABLE child(note text) INHERITS (parent)`)

	src := sourceFor(t, source.DSN(db), "")
	r := run(t, src)
	chk := mustCheck(t, r, "replica_identity", Warn)
	if len(chk.Details) != 2 || !strings.Contains(strings.Join(chk.Details, " "), "public.log") || !strings.Contains(chk.Finding, "LEFT OUT") {
		t.Fatalf("details %v", chk.Details)
	}
	if _, err := register(context.Background(), src, r); err != nil {
		t.Fatal(err)
	}
	// Published: the keyed tables only (ONLY: the inheritance child, which
	// has no key of its own, stays out); the application's UPDATE works.
	if got := pgtest.QueryValue[string](t, source, db, `SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = 'btfu_app'`); got != "keyed,parent" {
		t.Fatalf("published %q", got)
	}
	source.Exec(t, db, `UPDATE log SET msg = 'y'; UPDATE parent SET id = id; INSERT INTO child VALUES (1, 'c'); UPDATE child SET note = 'd'; DELETE FROM child`)
	// The variants below are other sources on this database: one at a
	// time (TestSecondSourceOnOneDatabaseIsRefused).
	source.Exec(t, db, `DROP PUBLICATION btfu_app`)

	// Excluded: published without it, as an explicit list.
	src = sourceFor(t, source.DSN(db), `exclude_tables = ["public.log", "public.child"]`)
	src.Publication = "btfu_app_excl"
	r = run(t, src)
	if r.Failed() || r.Plan.PublicationForm != sourcedb.FormTableList || strings.Join(r.Plan.Tables, ",") != "public.keyed,public.parent" {
		t.Fatalf("excluded plan: %+v %s", r.Plan, r.FailedChecks())
	}
	mustCheck(t, r, "replica_identity", OK)

	// REPLICA IDENTITY FULL: published, and the application's UPDATE works.
	for _, extra := range []string{`replica_identity_full = ["public.log", "public.child"]`, `tables_without_key = "replica_identity_full"`} {
		src = sourceFor(t, source.DSN(db), extra)
		src.Publication = "btfu_app_full"
		r = run(t, src)
		if r.Failed() || strings.Join(r.Plan.SetReplicaFull, ",") != "public.child,public.log" {
			t.Fatalf("full plan (%s): %+v %s", extra, r.Plan, r.FailedChecks())
		}
		if _, err := register(context.Background(), src, r); err != nil {
			t.Fatal(err)
		}
		if got := pgtest.QueryValue[string](t, source, db, `SELECT string_agg(relreplident::text, '') FROM pg_class WHERE oid IN ('public.log'::regclass, 'public.child'::regclass)`); got != "ff" {
			t.Fatalf("replica identity %q", got)
		}
		source.Exec(t, db, `UPDATE log SET msg = 'y'; DELETE FROM log; DROP PUBLICATION btfu_app_full; ALTER TABLE log REPLICA IDENTITY DEFAULT; ALTER TABLE child REPLICA IDENTITY DEFAULT`)
	}
}

func TestRegisterTwiceIsANoOp(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE t(id int PRIMARY KEY)`)
	src := sourceFor(t, source.DSN(db), "")
	g, err := register(context.Background(), src, run(t, src))
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Created) != 1+len(sourcedb.DDLObjects()) { // publication + the DDL-capture objects
		t.Fatalf("first registration created %v", g.Created)
	}
	r := run(t, src)
	mustCheck(t, r, "publication_existing", OK)
	mustCheck(t, r, "ddl_capture", OK)
	g, err = register(context.Background(), src, r)
	if err != nil {
		t.Fatal(err)
	}
	if g.Changed() {
		t.Fatalf("second registration changed %+v", g)
	}
	// The DDL trigger emits the command, in its transaction, as a logical
	// message, and does not break DDL.
	slot := "ddl_peek_" + db
	source.Exec(t, db, fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'test_decoding')`, slot))
	t.Cleanup(func() { source.Exec(t, "postgres", fmt.Sprintf(`SELECT pg_drop_replication_slot('%s')`, slot)) })
	source.Exec(t, db, `CREATE TABLE later(id int PRIMARY KEY)`)
	got := pgtest.QueryValue[string](t, source, db, fmt.Sprintf(`SELECT string_agg(data, E'\n') FROM pg_logical_slot_get_changes('%s', NULL, NULL)`, slot))
	if !strings.Contains(got, "prefix: btfu.ddl") || !strings.Contains(got, "CREATE TABLE later") || !strings.Contains(got, "transactional: 1") {
		t.Fatalf("DDL message not decoded:\n%s", got)
	}
}

// An existing publication of btfu's name is kept to the plan: planned
// tables it lacks are added, tables the plan leaves out are dropped.
func TestExistingPublicationIsKeptToThePlan(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE t(id int PRIMARY KEY); CREATE TABLE u(id int PRIMARY KEY); CREATE TABLE nokey(a int);
		CREATE PUBLICATION btfu_app FOR TABLE t, nokey`)
	src := sourceFor(t, source.DSN(db), "")
	r := run(t, src)
	mustCheck(t, r, "publication_existing", OK)
	if _, err := register(context.Background(), src, r); err != nil {
		t.Fatal(err)
	}
	if got := pgtest.QueryValue[string](t, source, db, `SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = 'btfu_app'`); got != "t,u" {
		t.Fatalf("published %q", got)
	}
	source.Exec(t, db, `UPDATE nokey SET a = 1`)
}

func TestSlotWithAnotherPluginIsReported(t *testing.T) {
	db := source.CreateDB(t)
	slot := "btfu_other_" + db
	source.Exec(t, db, fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'test_decoding')`, slot))
	t.Cleanup(func() { source.Exec(t, "postgres", fmt.Sprintf(`SELECT pg_drop_replication_slot('%s')`, slot)) })
	src := sourceFor(t, source.DSN(db), fmt.Sprintf("slot = %q", slot))
	r := run(t, src)
	chk := mustCheck(t, r, "slot", Fail)
	if !strings.Contains(chk.Finding, "test_decoding") || !strings.Contains(chk.Fix, "pg_drop_replication_slot") {
		t.Fatalf("slot check %+v", chk)
	}
}

func TestConnectionErrorsNameHostAndPortNeverPassword(t *testing.T) {
	db := source.CreateDB(t)
	role := "pw_" + db
	source.Exec(t, db, fmt.Sprintf(`CREATE ROLE %s LOGIN PASSWORD 'right-pass-3'`, role))
	dropRoleAtEnd(t, db, role)
	cases := []struct {
		name, dsn, want string
	}{
		{"bogus host", "postgres://u:secret-pass-9@no-such-host.invalid:5432/db?connect_timeout=5", "no-such-host.invalid:5432"},
		{"unreachable port", fmt.Sprintf("postgres://u:secret-pass-9@127.0.0.1:%d/db", freeClosedPort(t)), "connection refused"},
		{"wrong password", source.DSNFor(role, "secret-pass-9", db), "password authentication failed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Run(context.Background(), sourceFor(t, c.dsn, ""), Options{})
			var ce *sourcedb.ConnError
			if !errors.As(err, &ce) {
				t.Fatalf("want sourcedb.ConnError, got %v", err)
			}
			msg := err.Error()
			if strings.Contains(msg, "secret-pass-9") || strings.Contains(msg, "\n") {
				t.Fatalf("message leaks the password or spans lines: %q", msg)
			}
			if !strings.Contains(msg, c.want) || !strings.Contains(msg, "cannot connect to source app at ") {
				t.Fatalf("message %q lacks %q", msg, c.want)
			}
		})
	}
}

func freeClosedPort(t *testing.T) int {
	t.Helper()
	c, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	port := c.Port
	c.Stop()
	return port
}

func dropRoleAtEnd(t *testing.T, db, role string) {
	t.Cleanup(func() {
		source.Exec(t, db, "DROP OWNED BY "+role+" CASCADE")
		source.Exec(t, "postgres", "DROP ROLE IF EXISTS "+role)
	})
}

// DDL capture never fails the application's DDL: ALTER TABLE … SET
// UNLOGGED of a published table (PostgreSQL refuses it for a published
// table) works, the table leaves the publication and comes back when set
// LOGGED; and a capture function that fails turns into a WARNING, with a
// btfu.ddl_missed message in the stream.
func TestDDLCaptureNeverFailsTheDDL(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE keep(id int PRIMARY KEY); CREATE TABLE logged1(id int PRIMARY KEY)`)
	src := sourceFor(t, source.DSN(db), "")
	if _, err := register(context.Background(), src, run(t, src)); err != nil {
		t.Fatal(err)
	}
	published := func() string {
		return pgtest.QueryValue[string](t, source, db, `SELECT coalesce(string_agg(tablename, ',' ORDER BY tablename), '') FROM pg_publication_tables WHERE pubname = 'btfu_app'`)
	}
	source.Exec(t, db, `ALTER TABLE logged1 SET UNLOGGED`)
	if got := published(); got != "keep" {
		t.Fatalf("after SET UNLOGGED published %q", got)
	}
	source.Exec(t, db, `ALTER TABLE logged1 SET LOGGED; ALTER TABLE keep ADD COLUMN note text`)
	if got := published(); got != "keep,logged1" {
		t.Fatalf("after SET LOGGED published %q", got)
	}

	slot := "missed_" + db
	source.Exec(t, db, fmt.Sprintf(`SELECT pg_create_logical_replication_slot('%s', 'test_decoding')`, slot))
	t.Cleanup(func() { source.Exec(t, "postgres", fmt.Sprintf(`SELECT pg_drop_replication_slot('%s')`, slot)) })
	source.Exec(t, db, `CREATE OR REPLACE FUNCTION `+sourcedb.DDLCore+`(user_search_path text, tag text) RETURNS TABLE (msg_prefix text, msg_content text) LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'capture broken'; END $$`)
	conn := source.Connect(t, db)
	if _, err := conn.Exec(context.Background(), `CREATE TABLE after_break (id int PRIMARY KEY)`); err != nil {
		t.Fatalf("DDL failed because capture failed: %v", err)
	}
	got := pgtest.QueryValue[string](t, source, db, fmt.Sprintf(`SELECT string_agg(data, E'\n') FROM pg_logical_slot_get_changes('%s', NULL, NULL)`, slot))
	if !strings.Contains(got, "prefix: btfu.ddl_missed") || !strings.Contains(got, "capture broken") {
		t.Fatalf("no btfu.ddl_missed message:\n%s", got)
	}
}

// One database, one btfu source: DDL capture keeps one publication's table
// list, so a second source (another publication) would take the trigger
// from the first, whose publication would then miss new tables and whose
// tables' SET UNLOGGED would fail for the application. The probe says so
// and registration refuses, leaving the first source's capture intact;
// once the first is unregistered (its publication gone), the second may
// register.
func TestSecondSourceOnOneDatabaseIsRefused(t *testing.T) {
	ctx := context.Background()
	db := source.CreateDB(t)
	source.Exec(t, db, `CREATE TABLE keep(id int PRIMARY KEY)`)
	first := sourceFor(t, source.DSN(db), "")
	second := sourceFor(t, source.DSN(db), "publication = \"btfu_second\"\nslot = \"btfu_second\"")
	stale := run(t, second) // probed before the first registered
	if _, err := register(ctx, first, run(t, first)); err != nil {
		t.Fatal(err)
	}
	c := mustCheck(t, run(t, second), "ddl_capture", Fail)
	if !strings.Contains(c.Finding, "btfu_app") || !strings.Contains(c.Fix, "btfu unregister") {
		t.Errorf("finding %q, fix %q: want the other publication named and unregister as the fix", c.Finding, c.Fix)
	}
	if _, err := register(ctx, second, run(t, second)); !errors.Is(err, ErrChecksFailed) {
		t.Fatalf("registering a second source: %v, want the probe's refusal", err)
	}
	// Registration checks again: a probe made before the first source
	// registered does not let the second take the trigger, nor create
	// anything.
	if _, err := register(ctx, second, stale); !errors.Is(err, sourcedb.ErrCaptureServesOther) {
		t.Fatalf("registering a second source with an older probe: %v, want ErrCaptureServesOther", err)
	}
	if n := pgtest.QueryValue[int64](t, source, db, `SELECT count(*) FROM pg_publication WHERE pubname = 'btfu_second'`); n != 0 {
		t.Fatal("the refused registration created its publication")
	}
	// The first source's capture still keeps its publication.
	source.Exec(t, db, `CREATE TABLE later(id int PRIMARY KEY); ALTER TABLE keep SET UNLOGGED`)
	if got := pgtest.QueryValue[string](t, source, db, `SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_publication_tables WHERE pubname = 'btfu_app'`); got != "later" {
		t.Fatalf("btfu_app publishes %q, want later", got)
	}
	source.Exec(t, db, `ALTER TABLE keep SET LOGGED; DROP PUBLICATION btfu_app`)
	if _, err := register(ctx, second, run(t, second)); err != nil {
		t.Fatalf("registering once the first source's publication is gone: %v", err)
	}
	t.Cleanup(func() {
		source.Exec(t, "postgres", `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE database = '`+db+`'`)
	})
}

// A drill schedule is announced by the probe: what a drill does on the
// source (a temporary slot, locks and one read of each published table).
func TestDrillsAreAnnounced(t *testing.T) {
	db := source.CreateDB(t)
	if _, ok := run(t, sourceFor(t, source.DSN(db), "")).Check("drills"); ok {
		t.Error("drills announced without drill_schedule")
	}
	c := mustCheck(t, run(t, sourceFor(t, source.DSN(db), "drill_schedule = \"@weekly\"\ndrill_target = \"postgres://127.0.0.1:1/postgres\"")), "drills", Info)
	if !strings.Contains(c.Finding, "temporary slot") || !strings.Contains(c.Finding, "ACCESS SHARE") {
		t.Errorf("finding %q", c.Finding)
	}
}

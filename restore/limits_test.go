package restore

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/store"
)

// What logical decoding cannot carry is named: UNLOGGED tables (there at
// registration, or created later) in the plan's and the summary's LEFT OUT
// lists, and large objects counted in the summary.
func TestUnloggedTablesAndLargeObjectsAreNamed(t *testing.T) {
	e := capturingWith(t, nil, `CREATE UNLOGGED TABLE u1 (id int PRIMARY KEY, v text); INSERT INTO u1 VALUES (1, 'base');
		SELECT lo_from_bytea(0, 'before the base')`)
	source.Exec(t, e.db, "CREATE UNLOGGED TABLE u2 (id int PRIMARY KEY); INSERT INTO u2 VALUES (1); UPDATE u1 SET v = 'later'")
	ctx := context.Background()
	// The periodic check records them.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		recs, err := e.meta.ListTableCoverage(ctx, e.id)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range recs {
			if c.LeftOut && (c.Table == "public.u1" || c.Table == "public.u2") {
				n++
			}
		}
		if n == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("UNLOGGED tables not recorded as left out: %+v", recs)
		}
	}
	m := e.mark(t, "unlogged")
	e.waitStored(t, m)
	plan, err := MakePlan(ctx, e.meta, e.id, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range plan.LeftOut() {
		names = append(names, plan.Describe(c))
	}
	if all := strings.Join(names, "\n"); !strings.Contains(all, "public.u1: ") || !strings.Contains(all, "public.u2: ") || !strings.Contains(all, "UNLOGGED") {
		t.Errorf("plan does not name both UNLOGGED tables and why: %q", all)
	}
	db := target.CreateDB(t)
	sum, err := Run(ctx, e.meta, e.arts, e.id, plan, Options{TargetDSN: target.DSN(db)})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sum.LeftOut, "\n"); !strings.Contains(got, "public.u1") || !strings.Contains(got, "public.u2") {
		t.Errorf("summary's LEFT OUT does not name u1 and u2: %q", got)
	}
	if sum.LargeObjects != 1 {
		t.Errorf("summary counts %d large objects, want 1 (the one in the base backup)", sum.LargeObjects)
	}
}

// Tables without columns (made so, or with every column dropped) hold
// rows too: captured and restored, one row per insert, also in runs long
// enough for COPY, and deleted one at a time under REPLICA IDENTITY FULL.
func TestZeroColumnTablesRestore(t *testing.T) {
	e := capturingConf(t, nil, `CREATE TABLE nocols (); CREATE TABLE alldropped (a int, b text);`, `tables_without_key = "replica_identity_full"`)
	source.Exec(t, e.db, `INSERT INTO nocols DEFAULT VALUES; INSERT INTO nocols DEFAULT VALUES;
		INSERT INTO nocols SELECT FROM generate_series(1, 20);
		ALTER TABLE alldropped DROP COLUMN a; ALTER TABLE alldropped DROP COLUMN b;
		INSERT INTO alldropped SELECT FROM generate_series(1, 3)`)
	source.Exec(t, e.db, `DELETE FROM nocols WHERE ctid = (SELECT min(ctid) FROM nocols)`)
	m := e.mark(t, "zero columns")
	e.waitStored(t, m)
	db, _, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	for tbl, want := range map[string]int64{"nocols": 21, "alldropped": 3} {
		if got := pgtest.QueryValue[int64](t, target, db, "SELECT count(*) FROM "+tbl); got != want {
			t.Errorf("%s restored with %d rows, want %d", tbl, got, want)
		}
	}
}

// A SQL_ASCII database holds text in any bytes; a UTF-8 target refuses
// what is not valid UTF-8 (so would pg_restore). The restore goes on and
// names the table, left out from the first such row; other tables stay
// exact.
func TestTextNotValidInTheTargetEncodingLeavesItsTableOut(t *testing.T) {
	db := "t_sqlascii_" + strings.ToLower(strings.ReplaceAll(t.Name(), "Test", ""))[:20]
	source.Exec(t, "postgres", "CREATE DATABASE "+db+" ENCODING 'SQL_ASCII' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
	t.Cleanup(func() { source.Exec(t, "postgres", "DROP DATABASE IF EXISTS "+db+" WITH (FORCE)") })
	e := capturingIn(t, db, nil, "CREATE TABLE raw (id int PRIMARY KEY, t text)", "")
	source.Exec(t, e.db, `INSERT INTO raw VALUES (1, 'plain'); INSERT INTO items(name, qty) VALUES ('fine', 1)`)
	source.Exec(t, e.db, `INSERT INTO raw VALUES (2, convert_from('\xff41'::bytea, 'SQL_ASCII'))`)
	source.Exec(t, e.db, `UPDATE raw SET t = 'later' WHERE id = 1; INSERT INTO items(name, qty) VALUES ('after', 2)`)
	m := e.mark(t, "invalid text")
	e.waitStored(t, m)
	db2, sum, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sum.LeftOut, "\n"); !strings.Contains(got, "public.raw: left out from the transaction") || !strings.Contains(got, "not valid UTF-8") || !strings.Contains(got, "id=2") {
		t.Errorf("LEFT OUT does not name raw and why: %q", got)
	}
	if got := contentHash(t, target, db2)["items"]; got != m.hash["items"] {
		t.Error("items differs from the source")
	}
	if got := pgtest.QueryValue[string](t, target, db2, "SELECT string_agg(t, ',' ORDER BY id) FROM raw"); got != "plain" {
		t.Errorf("raw holds %q, want its rows up to the invalid one", got)
	}
}

// Copies of system catalogs hold values PostgreSQL writes but never reads
// back (pg_node_tree): the table is left out of replay from its first
// such row, named, and the restore goes on (pg_restore could not load
// them either). Through CREATE TABLE AS rows and through the stream.
func TestValuesTheServerNeverReadsBackLeaveTheirTableOut(t *testing.T) {
	e := capturingConf(t, nil, "", `tables_without_key = "replica_identity_full"`)
	source.Exec(t, e.db, `CREATE TABLE pt (a int PRIMARY KEY) PARTITION BY RANGE (a); CREATE TABLE pt1 PARTITION OF pt FOR VALUES FROM (0) TO (10)`)
	source.Exec(t, e.db, `CREATE TABLE cat_copy AS SELECT oid::int AS id, relname::text, relpartbound FROM pg_class WHERE relispartition OR relname = 'pg_class'`)
	source.Exec(t, e.db, `CREATE TABLE cat_later (id int PRIMARY KEY, b pg_node_tree); INSERT INTO cat_later VALUES (1, NULL)`)
	source.Exec(t, e.db, `INSERT INTO cat_later SELECT 2, relpartbound FROM pg_class WHERE relname = 'pt1'; UPDATE cat_later SET b = NULL WHERE id = 2;
		INSERT INTO items(name, qty) VALUES ('after', 5)`)
	m := e.mark(t, "node trees")
	e.waitStored(t, m)
	db, sum, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	left := strings.Join(sum.LeftOut, "\n")
	for _, want := range []string{"public.cat_copy: left out", "public.cat_later: left out", "pg_node_tree"} {
		if !strings.Contains(left, want) {
			t.Errorf("LEFT OUT does not say %q: %q", want, left)
		}
	}
	if got := contentHash(t, target, db)["items"]; got != m.hash["items"] {
		t.Error("items differs from the source")
	}
	if got := pgtest.QueryValue[int64](t, target, db, "SELECT count(*) FROM cat_later"); got != 1 {
		t.Errorf("cat_later holds %d rows, want the one before the first node tree", got)
	}
}

// A published table moved into pg_catalog leaves the publication and is
// named LEFT OUT: pg_dump does not dump tables there, so no base backup
// holds it, and the restore goes on.
func TestTableMovedIntoPgCatalogIsLeftOut(t *testing.T) {
	e := capturingWith(t, nil, "CREATE TABLE sys_t (id int PRIMARY KEY, v text)")
	source.Exec(t, e.db, `INSERT INTO sys_t VALUES (1, 'a')`)
	source.Exec(t, e.db, `ALTER TABLE sys_t SET SCHEMA pg_catalog`)
	source.Exec(t, e.db, `INSERT INTO pg_catalog.sys_t VALUES (2, 'b'); INSERT INTO items(name, qty) VALUES ('after', 1)`)
	t.Cleanup(func() { source.Exec(t, e.db, `DROP TABLE IF EXISTS pg_catalog.sys_t`) })
	m := e.mark(t, "catalog")
	e.waitStored(t, m)
	// The worker records it once the transaction is stored.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		recs, err := e.meta.ListTableCoverage(context.Background(), e.id)
		if err != nil {
			t.Fatal(err)
		}
		if slices.ContainsFunc(recs, func(c store.TableCoverage) bool { return c.LeftOut && c.Table == "pg_catalog.sys_t" }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pg_catalog.sys_t not recorded as left out: %+v", recs)
		}
	}
	db, sum, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(sum.LeftOut, "\n"); !strings.Contains(got, "pg_catalog.sys_t") || !strings.Contains(got, "pg_dump does not dump") {
		recs, _ := e.meta.ListTableCoverage(context.Background(), e.id)
		t.Errorf("LEFT OUT does not name pg_catalog.sys_t and why: %q (target %s, base %s, coverage records %+v)", got, m.lsn, sum.Base.ConsistentLSN, recs)
	}
	if got := contentHash(t, target, db)["items"]; got != m.hash["items"] {
		t.Error("items differs from the source")
	}
}

// A table btfu set to REPLICA IDENTITY FULL (tables_without_key =
// "replica_identity_full", inside its capture trigger: no captured
// statement says so) has it in the restore too; a publication of the
// application's, restored with the rest, would otherwise refuse the
// UPDATEs replay applies (corpus publication.sql).
func TestIdentityFullSetByBtfuReachesTheRestore(t *testing.T) {
	e := capturingConf(t, nil, `CREATE SCHEMA s; CREATE PUBLICATION app_pub FOR TABLES IN SCHEMA s`, `tables_without_key = "replica_identity_full"`)
	source.Exec(t, e.db, `CREATE TABLE s.k (a int, b text); INSERT INTO s.k VALUES (1, 'x')`)
	source.Exec(t, e.db, `UPDATE s.k SET b = 'y'; DELETE FROM s.k WHERE a = 2`)
	m := e.mark(t, "identity")
	want := tableHash(t, source, e.db, "s.k")
	e.waitStored(t, m)
	db, _, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	if got := tableHash(t, target, db, "s.k"); got != want {
		t.Errorf("s.k restored as %s, source held %s", got, want)
	}
	if got := pgtest.QueryValue[string](t, target, db, "SELECT relreplident::text FROM pg_class WHERE oid = 's.k'::regclass"); got != "f" {
		t.Errorf("s.k has replica identity %s in the restore, the source has f", got)
	}
}

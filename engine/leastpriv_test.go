package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/restore"
	"github.com/btfu/btfu/store"
)

// tableHashes hashes every user table of db (schema.table -> md5).
func tableHashes(t *testing.T, c *pgtest.Cluster, db string) map[string]string {
	t.Helper()
	names := pgtest.QueryValue[[]string](t, c, db, `SELECT coalesce(array_agg(format('%I.%I', schemaname, tablename) ORDER BY 1), '{}') FROM pg_tables
		WHERE schemaname NOT IN ('pg_catalog', 'information_schema', 'btfu')`)
	out := map[string]string{}
	for _, n := range names {
		out[n] = pgtest.QueryValue[string](t, c, db, fmt.Sprintf("SELECT coalesce(md5(string_agg(x::text, '|' ORDER BY x::text)), 'empty') FROM %s x", n))
	}
	return out
}

// The whole cycle as a role that is not superuser: REPLICATION, owner of
// its tables, CREATE on the database. The publication is an explicit list,
// there is no event trigger (DDL is derived from relation messages), and a
// table created after registration is added to the publication, covered
// from a recorded LSN, and restorable after the base backup that follows.
func TestLeastPrivilegeCycle(t *testing.T) {
	ctx := context.Background()
	db := source.CreateDB(t)
	role := "lp_" + db
	source.Exec(t, "postgres", fmt.Sprintf(`CREATE ROLE %s LOGIN REPLICATION PASSWORD 'lp-secret'`, role))
	source.Exec(t, "postgres", fmt.Sprintf(`GRANT CREATE ON DATABASE %s TO %s`, db, role))
	source.Exec(t, db, fmt.Sprintf(`GRANT CREATE ON SCHEMA public TO %s`, role))
	t.Cleanup(func() {
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 's_%s%%' AND NOT active", db))
	})
	asRole := func(sql string) {
		t.Helper()
		conn, err := pgx.Connect(ctx, source.DSNFor(role, "lp-secret", db))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	asRole(`CREATE TABLE accounts(id bigserial PRIMARY KEY, owner text NOT NULL, balance numeric(12,2));
		CREATE TABLE ledger(id bigserial PRIMARY KEY, account bigint REFERENCES accounts, amount numeric(12,2), at timestamptz DEFAULT now());
		INSERT INTO accounts(owner, balance) SELECT 'o' || g, g FROM generate_series(1, 20) g`)

	dir := t.TempDir()
	cfg, err := config.Parse(filepath.Join(dir, "config.toml"), []byte(fmt.Sprintf(`
[metadata]
path = %q
[storage]
path = %q
[engine]
spool_dir = %q
[[source]]
name = "lp"
dsn = %q
slot = "s_%s"
schedule = "off"
joined_backup_interval = "1s"
`, filepath.Join(dir, "btfu.db"), filepath.Join(dir, "data"), t.TempDir(), source.DSNFor(role, "lp-secret", db), db)))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	events := e.Subscribe(t.Context())
	run(t, e)
	reg := waitEvent(t, events, "source.registered")
	if !strings.Contains(reg.Attrs["publication"], "FOR TABLE") || reg.Attrs["ddl_capture"] != "false" {
		t.Fatalf("registration as a non-superuser: %+v", reg.Attrs)
	}
	waitState(t, e, "streaming")

	asRole(`UPDATE accounts SET balance = balance * 2 WHERE id % 2 = 0;
		INSERT INTO ledger(account, amount) SELECT id, balance FROM accounts;
		ALTER TABLE accounts ADD COLUMN note text;
		UPDATE accounts SET note = 'vip' WHERE id < 5;
		DELETE FROM ledger WHERE account > 15`)
	mark1LSN := source.CurrentLSN(t)
	mark1 := tableHashes(t, source, db)

	// A table created after registration, filled before btfu notices it.
	asRole(`CREATE TABLE late(id int PRIMARY KEY, v text); INSERT INTO late SELECT g, 'early ' || g FROM generate_series(1, 30) g`)
	added := waitEvent(t, events, "publication.table_added")
	if !strings.Contains(added.Message, "public.late") {
		t.Fatalf("table added event: %s", added.Message)
	}
	waitEvent(t, events, "backup.finished")
	asRole(`INSERT INTO late SELECT g, 'late ' || g FROM generate_series(31, 40) g; UPDATE late SET v = upper(v) WHERE id % 3 = 0; DELETE FROM late WHERE id = 1;
		UPDATE accounts SET balance = 0 WHERE id = 3`)
	mark2LSN := source.CurrentLSN(t)
	mark2 := tableHashes(t, source, db)

	cov, err := e.Meta().ListTableCoverage(ctx, mustSourceID(t, e, "lp"))
	if err != nil || len(cov) != 1 || cov[0].Table != "public.late" {
		t.Fatalf("table coverage: %+v %v", cov, err)
	}

	restoreTo := func(lsn pglogrepl.LSN) (string, restore.Summary) {
		t.Helper()
		var plan *restore.Plan
		waitFor(t, func() bool {
			plan, err = e.PlanRestore(ctx, "lp", restore.Target{LSN: lsn})
			return err == nil
		}, "coverage up to "+lsn.String())
		target := source.CreateDB(t)
		sum, err := e.Restore(ctx, "lp", plan, restore.Options{TargetDSN: source.DSN(target)})
		if err != nil {
			t.Fatal(err)
		}
		return target, sum
	}
	for _, m := range []struct {
		name string
		lsn  pglogrepl.LSN
		want map[string]string
	}{{"before the late table", mark1LSN, mark1}, {"after the late table's base backup", mark2LSN, mark2}} {
		target, sum := restoreTo(m.lsn)
		if len(sum.LeftOut) > 0 {
			t.Errorf("%s: left out %v", m.name, sum.LeftOut)
		}
		if got := tableHashes(t, source, target); fmt.Sprint(got) != fmt.Sprint(m.want) {
			t.Errorf("%s: restored %v, source held %v", m.name, got, m.want)
		}
	}
	// Between the table joining the publication and the next base backup,
	// only the older base fits: the table is left out, and said so.
	_, sum := restoreTo(cov[0].FromLSN)
	if len(sum.LeftOut) != 1 || !strings.Contains(sum.LeftOut[0], "public.late") {
		t.Fatalf("restore from the base before the late table: left out %v", sum.LeftOut)
	}

	// A keyless table is left out; once dropped, nothing says so any more
	// (without DDL capture, the periodic check notices it is gone).
	id := mustSourceID(t, e, "lp")
	leftOut := func() []string {
		recs, err := e.Meta().ListTableCoverage(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return store.LeftOutNow(recs)
	}
	asRole(`CREATE TABLE nokey_lp (a int); INSERT INTO nokey_lp VALUES (1)`)
	waitFor(t, func() bool { return slices.Contains(leftOut(), "public.nokey_lp") }, "nokey_lp left out")
	asRole(`DROP TABLE nokey_lp`)
	waitFor(t, func() bool { return !slices.Contains(leftOut(), "public.nokey_lp") }, "nokey_lp no longer left out once dropped")
}

func mustSourceID(t *testing.T, e *Engine, name string) int64 {
	t.Helper()
	src, err := e.SourceRecord(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return src.ID
}

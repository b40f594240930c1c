package restore

import (
	"strings"
	"testing"

	"github.com/btfu/btfu/internal/pgtest"
)

// DDL run inside a DO block, a function or a procedure fires the capture
// trigger, but the client's statement (DO …, SELECT f(), CALL p()) holds
// no DDL replay could run, and running it again would repeat its data
// changes. Replay runs what the capture rebuilt from the catalog instead
// (DESIGN 5), and the restore equals the source.

// nestedRestore marks the source, restores to the mark and compares the
// given tables with the source, and which objects exist (to_regclass,
// to_regtype or to_regprocedure, by the key's prefix "class:", "type:",
// "procedure:").
func nestedRestore(t *testing.T, e *env, tables []string, objects map[string]bool) (string, Summary) {
	t.Helper()
	m := e.mark(t, "after nested DDL")
	want := map[string]string{}
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
	for obj, wantExists := range objects {
		kind, name, _ := strings.Cut(obj, ":")
		for _, c := range []struct {
			what string
			cl   *pgtest.Cluster
			want bool
		}{{"source", source, wantExists}, {"restore", target, wantExists}} {
			d := e.db
			if c.cl == target {
				d = db
			}
			if got := pgtest.QueryValue[bool](t, c.cl, d, "SELECT to_reg"+kind+"($1) IS NOT NULL", name); got != c.want {
				t.Errorf("%s %s exists in the %s: %v, want %v", kind, name, c.what, got, c.want)
			}
		}
	}
	return db, sum
}

func notReproduced(sum Summary) []string {
	var out []string
	for _, d := range sum.SkippedDDL {
		if d.NotReproduced {
			out = append(out, d.String())
		}
	}
	return out
}

// A migration's DO block creates a table (serial key, default, check
// constraint, index, a constraint added by ALTER TABLE, a comment) and a
// type, but only when they are missing; rows come in later transactions.
func TestNestedTableFromDOBlock(t *testing.T) {
	e := capturing(t)
	src := func(sql string) { t.Helper(); source.Exec(t, e.db, sql) }
	src(`DO $$ BEGIN
		IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'status') THEN
			CREATE TYPE status AS ENUM ('new', 'paid', 'shipped');
		END IF;
		IF to_regclass('orders') IS NULL THEN
			EXECUTE 'CREATE TABLE orders (id serial PRIMARY KEY, placed date NOT NULL DEFAULT ''2020-01-01'', total numeric(10,2) CHECK (total >= 0), st status DEFAULT ''new'', note text COLLATE "C")';
			CREATE INDEX orders_placed ON orders (placed DESC) WHERE total > 0;
			ALTER TABLE orders ADD CONSTRAINT orders_note_len CHECK (length(note) < 100);
			COMMENT ON TABLE orders IS 'made by a migration';
		END IF;
		-- A subtransaction, as migrations use to go on after errors.
		BEGIN
			ALTER TABLE orders ADD CONSTRAINT orders_total_key UNIQUE (total);
		EXCEPTION WHEN duplicate_table OR duplicate_object THEN NULL;
		END;
	END $$`)
	src(`INSERT INTO orders (total) VALUES (10), (20.5)`)
	src(`INSERT INTO orders (placed, total, st, note) VALUES ('2024-05-01', 7, 'paid', 'x'); UPDATE orders SET st = 'shipped' WHERE total = 10`)
	src(`DELETE FROM orders WHERE total = 20.5`)
	db, sum := nestedRestore(t, e, []string{"orders"}, map[string]bool{
		"class:orders": true, "class:orders_placed": true, "class:orders_id_seq": true, "class:orders_total_key": true, "type:status": true,
	})
	for _, q := range []string{
		"SELECT pg_get_indexdef('orders_placed'::regclass)",
		"SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), ', ' ORDER BY conname) FROM pg_constraint WHERE conrelid = 'orders'::regclass",
		"SELECT string_agg(attname || ' ' || format_type(atttypid, atttypmod) || coalesce(' ' || pg_get_expr(adbin, adrelid), ''), ', ' ORDER BY attnum) FROM pg_attribute LEFT JOIN pg_attrdef ON adrelid = attrelid AND adnum = attnum WHERE attrelid = 'orders'::regclass AND attnum > 0",
		"SELECT obj_description('orders'::regclass, 'pg_class')",
	} {
		assertSameOnTarget(t, e, db, q)
	}
	if nr := notReproduced(sum); len(nr) != 0 {
		t.Errorf("not reproduced: %v", nr)
	}
}

// assertSameOnTarget compares the answer of q on the source and on the
// restored database db.
func assertSameOnTarget(t *testing.T, e *env, db, q string) {
	t.Helper()
	want := pgtest.QueryValue[string](t, source, e.db, q)
	got := pgtest.QueryValue[string](t, target, db, q)
	if got != want {
		t.Errorf("%s\n  restore: %s\n  source:  %s", q, got, want)
	}
}

// pg_partman-style maintenance: a function creates the next monthly
// partitions of a partitioned table (called with SELECT, also for months
// that exist already), and rows are routed to them.
func TestNestedPartitionsFromFunction(t *testing.T) {
	e := capturing(t)
	src := func(sql string) { t.Helper(); source.Exec(t, e.db, sql) }
	src(`CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY, at date NOT NULL, what text, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)`)
	src(`CREATE FUNCTION make_partitions(first date, months int) RETURNS int LANGUAGE plpgsql AS $$
		DECLARE
			made int := 0;
			m date;
			name text;
		BEGIN
			FOR i IN 0 .. months - 1 LOOP
				m := date_trunc('month', first)::date + make_interval(months => i);
				name := 'events_' || to_char(m, 'YYYY_MM');
				IF to_regclass(name) IS NULL THEN
					EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%L) TO (%L)', name, m, (m + interval '1 month')::date);
					EXECUTE format('CREATE INDEX ON %I (what)', name);
					made := made + 1;
				END IF;
			END LOOP;
			RETURN made;
		END $$`)
	src(`SELECT make_partitions('2024-01-01', 2)`)
	src(`INSERT INTO events (at, what) VALUES ('2024-01-03', 'a'), ('2024-02-10', 'b')`)
	src(`SELECT make_partitions('2024-02-01', 2); INSERT INTO events (at, what) VALUES ('2024-03-31', 'c')`)
	// A default partition attached later, as partman does.
	src(`DO $$ BEGIN
		CREATE TABLE events_default (LIKE events INCLUDING DEFAULTS INCLUDING INDEXES);
		ALTER TABLE events ATTACH PARTITION events_default DEFAULT;
	END $$`)
	src(`INSERT INTO events (at, what) VALUES ('2030-01-01', 'later'); UPDATE events SET what = 'b2' WHERE what = 'b'`)
	db, sum := nestedRestore(t, e, []string{"events", "events_2024_03", "events_default"}, map[string]bool{
		"class:events_2024_01": true, "class:events_2024_02": true, "class:events_2024_03": true, "class:events_default": true,
	})
	assertSameOnTarget(t, e, db, "SELECT string_agg(c.relname || ' ' || pg_get_expr(c.relpartbound, c.oid), ', ' ORDER BY c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'events'::regclass")
	assertSameOnTarget(t, e, db, "SELECT count(*)::text FROM pg_indexes WHERE tablename LIKE 'events%'")
	if nr := notReproduced(sum); len(nr) != 0 {
		t.Errorf("not reproduced: %v", nr)
	}
}

// A DO block creates an enum type, a table using it, a view and a
// function; the function works on the restore.
func TestNestedTypesViewsAndFunctions(t *testing.T) {
	e := capturing(t)
	src := func(sql string) { t.Helper(); source.Exec(t, e.db, sql) }
	src(`DO $$ BEGIN
		CREATE SCHEMA app;
		CREATE TYPE app.mood AS ENUM ('sad', 'ok', 'happy');
		CREATE DOMAIN app.score AS int NOT NULL CHECK (VALUE BETWEEN 0 AND 10);
		CREATE TABLE app.people (id int PRIMARY KEY, m app.mood, s app.score DEFAULT 5);
		CREATE VIEW app.happy AS SELECT id, s FROM app.people WHERE m = 'happy';
		CREATE FUNCTION app.twice(x int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT x * 2';
		CREATE MATERIALIZED VIEW app.counts AS SELECT m, count(*) AS n FROM app.people GROUP BY m;
	END $$`)
	src(`INSERT INTO app.people VALUES (1, 'happy', 3), (2, 'sad', 0), (3, 'happy', 9)`)
	src(`DO $$ BEGIN ALTER TYPE app.mood ADD VALUE 'meh' BEFORE 'ok'; END $$`)
	src(`INSERT INTO app.people VALUES (4, 'meh', 1); DO $$ BEGIN REFRESH MATERIALIZED VIEW app.counts; END $$`)
	db, sum := nestedRestore(t, e, []string{"app.people", "app.happy", "app.counts"}, map[string]bool{
		"type:app.mood": true, "type:app.score": true, "class:app.happy": true, "procedure:app.twice(int)": true,
	})
	assertSameOnTarget(t, e, db, "SELECT app.twice(21)::text")
	assertSameOnTarget(t, e, db, "SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = 'app.mood'::regtype")
	if nr := notReproduced(sum); len(nr) != 0 {
		t.Errorf("not reproduced: %v", nr)
	}
}

// Procedures called with CALL: one adds a column with a default and NOT
// NULL to a table that has rows (the target must fill them as the source
// did), one drops a table, one changes a column's type in the transaction
// of the next row (derived from the stream), and a DO block makes a change
// btfu cannot rebuild, which the summary names.
func TestNestedProceduresAndWhatIsNotReproduced(t *testing.T) {
	e := capturing(t)
	src := func(sql string) { t.Helper(); source.Exec(t, e.db, sql) }
	src(`CREATE TABLE doomed (id int PRIMARY KEY); INSERT INTO doomed VALUES (1)`)
	src(`CREATE TABLE nums (id int PRIMARY KEY, v int); INSERT INTO nums VALUES (1, 1)`)
	src(`INSERT INTO items (name, qty) VALUES ('a', 1), ('b', 2)`)
	src(`CREATE PROCEDURE add_flag() LANGUAGE plpgsql AS $$ BEGIN
		ALTER TABLE items ADD COLUMN flag text NOT NULL DEFAULT 'none';
	END $$`)
	src(`CREATE PROCEDURE drop_doomed() LANGUAGE plpgsql AS $$ BEGIN DROP TABLE doomed; END $$`)
	src(`CREATE PROCEDURE widen() LANGUAGE plpgsql AS $$ BEGIN ALTER TABLE nums ALTER COLUMN v TYPE numeric(10,2); END $$`)
	src(`CALL add_flag()`)
	src(`INSERT INTO items (name, qty, flag) VALUES ('c', 3, 'set'); UPDATE items SET flag = 'changed' WHERE name = 'a'`)
	src(`CALL drop_doomed()`)
	src(`BEGIN; CALL widen(); INSERT INTO nums VALUES (2, 1.25); COMMIT`)
	// A serial column added inside a function: its sequence comes first.
	src(`DO $$ BEGIN EXECUTE 'ALTER TABLE nums ADD COLUMN e text, ADD COLUMN counter serial'; END $$`)
	src(`INSERT INTO nums (id, v) VALUES (3, 3)`)
	// A collation made with EXECUTE (its locale read at run time).
	src(`DO $$ BEGIN EXECUTE 'CREATE COLLATION made_c (locale = ' || quote_literal(current_setting('lc_collate')) || ')'; END $$`)
	src(`ALTER TABLE nums ADD COLUMN label text COLLATE made_c; INSERT INTO nums (id, v, label) VALUES (4, 4, 'x')`)
	src(`DO $$ BEGIN ALTER TABLE tags SET (fillfactor = 70); END $$`)
	src(`INSERT INTO tags VALUES (1, 'after')`)
	_, sum := nestedRestore(t, e, []string{"items", "nums", "tags"}, map[string]bool{"class:doomed": false})
	nr := notReproduced(sum)
	if len(nr) != 1 || !strings.Contains(nr[0], "ALTER TABLE public.tags") {
		t.Errorf("not reproduced: %q, want the ALTER TABLE of tags alone", nr)
	}
	for _, d := range sum.SkippedDDL {
		if !d.NotReproduced {
			t.Errorf("skipped: %s", d)
		}
	}
}

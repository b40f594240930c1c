package restore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/internal/pgtest"
)

// Recovery tests for the schema classes of issue 13. Each test sets up
// its objects before registration (they are in the first base backup),
// changes rows and schema through the stream, takes a point, goes on
// changing after it, and restores to the point (and to a later one):
// every relation must hold exactly the rows the source held there, and
// every sequence must be at or past where the source was.

// state is what the source held at a mark: the rows of each relation (as
// text, sorted) and the state of each sequence.
type state struct {
	mark
	rows map[string]string
	seqs map[string]seqState
}

type seqState struct {
	last, inc, min, max int64
	called, cycle       bool
}

// next is the value nextval would return.
func (s seqState) next() int64 {
	if !s.called {
		return s.last
	}
	n := s.last + s.inc
	switch {
	case s.inc > 0 && (n > s.max || n < s.last):
		n = s.min
	case s.inc < 0 && (n < s.min || n > s.last):
		n = s.max
	}
	return n
}

// relRows is rel's rows as text, sorted, after their count.
func relRows(t *testing.T, c *pgtest.Cluster, db, rel string) string {
	t.Helper()
	return pgtest.QueryValue[string](t, c, db, fmt.Sprintf(
		"SELECT count(*) || E' rows\\n' || coalesce(string_agg(whole_row::text, E'\\n' ORDER BY whole_row::text COLLATE \"C\"), '') FROM %s whole_row", rel))
}

func readSeq(t *testing.T, c *pgtest.Cluster, db, seq string) seqState {
	t.Helper()
	var s seqState
	conn := c.Connect(t, db)
	defer conn.Close(context.Background())
	err := conn.QueryRow(context.Background(), fmt.Sprintf(`SELECT s.last_value, s.is_called, p.seqincrement, p.seqmin, p.seqmax, p.seqcycle
		FROM %s s, pg_sequence p WHERE p.seqrelid = '%s'::regclass`, seq, strings.ReplaceAll(seq, "'", "''"))).Scan(&s.last, &s.called, &s.inc, &s.min, &s.max, &s.cycle)
	if err != nil {
		t.Fatalf("sequence %s: %v", seq, err)
	}
	return s
}

// state marks the source now, with the rows of rels and the sequences seqs.
func (e *env) state(t *testing.T, name string, rels, seqs []string) state {
	t.Helper()
	s := state{mark: e.mark(t, name), rows: map[string]string{}, seqs: map[string]seqState{}}
	for _, r := range rels {
		s.rows[r] = relRows(t, source, e.db, r)
	}
	for _, q := range seqs {
		s.seqs[q] = readSeq(t, source, e.db, q)
	}
	return s
}

// waitSequences waits until a sequence snapshot at or after lsn is
// stored: a restore to lsn takes its sequences from it.
func (e *env) waitSequences(t *testing.T, lsn pglogrepl.LSN) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		snaps, err := e.meta.ListSequenceSnapshots(context.Background(), e.id)
		if err != nil {
			t.Fatal(err)
		}
		if len(snaps) > 0 && snaps[len(snaps)-1].LSN >= lsn {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no sequence snapshot at or after %s", lsn)
		}
	}
}

// restoreTo restores to s by LSN (changes after s are stored too) and
// compares every relation and sequence with the source at s.
func (e *env) restoreTo(t *testing.T, s state) {
	t.Helper()
	db, sum, err := e.restore(t, Target{LSN: s.lsn})
	if err != nil {
		t.Fatalf("restore to %s (%s): %v", s.name, s.lsn, err)
	}
	t.Logf("restore to %s (%s): %d transactions, %d rows, left out %v", s.name, s.lsn, sum.Transactions, sum.Rows, sum.LeftOut)
	if len(sum.LeftOut) > 0 || len(sum.SkippedDDL) > 0 {
		t.Errorf("restore to %s: left out %v, skipped DDL %v", s.name, sum.LeftOut, sum.SkippedDDL)
	}
	for rel, want := range s.rows {
		if got := relRows(t, target, db, rel); got != want {
			t.Errorf("restore to %s (%s): %s restored as\n%s\nthe source held\n%s", s.name, s.lsn, rel, got, want)
		}
	}
	for seq, src := range s.seqs {
		got := readSeq(t, target, db, seq)
		next := pgtest.QueryValue[int64](t, target, db, fmt.Sprintf("SELECT nextval('%s')", strings.ReplaceAll(seq, "'", "''")))
		switch {
		case src.cycle:
			// Every value of a cycled sequence was handed out before: the
			// restore goes on where the source was, not back in the cycle.
			if next != src.next() {
				t.Errorf("restore to %s: cycled sequence %s hands out %d (last_value %d), the source's next was %d (last_value %d)", s.name, seq, next, got.last, src.next(), src.last)
			}
		case src.inc > 0 && next < src.next(), src.inc < 0 && next > src.next():
			t.Errorf("restore to %s: sequence %s hands out %d (last_value %d, is_called %v), which the source had handed out (its last_value %d, next %d)", s.name, seq, next, got.last, got.called, src.last, src.next())
		}
	}
}

// run applies steps on the source, each in its own transaction. A step
// whose last statement is an UPDATE or DELETE must change rows: one that
// changes none would test nothing.
func (e *env) run(t *testing.T, steps ...string) {
	t.Helper()
	conn := source.Connect(t, e.db)
	defer conn.Close(context.Background())
	for _, s := range steps {
		tag, err := conn.Exec(context.Background(), s)
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if (tag.Update() || tag.Delete()) && tag.RowsAffected() == 0 {
			t.Fatalf("%s: changed no rows", s)
		}
	}
}

// points takes a point after before, goes on with after and takes a last
// point, waits until both are stored, and restores to each.
func (e *env) points(t *testing.T, rels, seqs, before, after []string) {
	t.Helper()
	e.run(t, before...)
	p1 := e.state(t, "point", rels, seqs)
	e.run(t, after...)
	p2 := e.state(t, "after the point", rels, seqs)
	e.waitStored(t, p2.mark)
	e.waitSequences(t, p2.lsn)
	e.restoreTo(t, p1)
	e.restoreTo(t, p2)
}

// Declarative partitions: a range tree with a default partition and a
// sub-partitioned partition (rows moving between partitions at every
// level, into and out of the default), a partition created through the
// stream, a table attached after it got rows, a partition detached and
// changed on its own right after, TRUNCATE of a partition and of a
// sub-partitioned one, a hash tree created through the stream, and a list
// tree without a key (REPLICA IDENTITY FULL partitions) with duplicate
// rows.
func TestSchemaPartitions(t *testing.T) {
	e := capturingConf(t, nil, `
CREATE TABLE pr (id int, k int, v text, PRIMARY KEY (id, k)) PARTITION BY RANGE (k);
CREATE TABLE pr_low PARTITION OF pr FOR VALUES FROM (0) TO (100);
CREATE TABLE pr_mid PARTITION OF pr FOR VALUES FROM (100) TO (200) PARTITION BY RANGE (id);
CREATE TABLE pr_mid_a PARTITION OF pr_mid FOR VALUES FROM (MINVALUE) TO (1000);
CREATE TABLE pr_mid_b PARTITION OF pr_mid FOR VALUES FROM (1000) TO (MAXVALUE);
CREATE TABLE pr_def PARTITION OF pr DEFAULT;
INSERT INTO pr SELECT g, g * 7 % 300, 'r' || g FROM generate_series(1, 60) g;
CREATE TABLE pl (region text, n int, note text) PARTITION BY LIST (region);
CREATE TABLE pl_eu PARTITION OF pl FOR VALUES IN ('eu');
CREATE TABLE pl_us PARTITION OF pl FOR VALUES IN ('us', 'ca');
CREATE TABLE pl_other PARTITION OF pl DEFAULT;
ALTER TABLE pl_eu REPLICA IDENTITY FULL; ALTER TABLE pl_us REPLICA IDENTITY FULL; ALTER TABLE pl_other REPLICA IDENTITY FULL;
INSERT INTO pl VALUES ('eu', 1, 'a'), ('eu', 1, 'a'), ('us', 2, NULL), ('ca', 3, 'c'), ('jp', 4, 'd'), ('jp', 4, 'd');`,
		`tables_without_key = "replica_identity_full"`)
	rels := []string{"pr", "pr_low", "pr_mid", "pr_mid_a", "pr_mid_b", "pr_def", "pr_hi", "pr_att",
		"ph", "ph_0", "ph_1", "ph_2", "pl", "pl_eu", "pl_us", "pl_other"}
	e.points(t, rels, nil, []string{
		`INSERT INTO pr VALUES (2000, 150, 'mid b'), (5, 250, 'default'), (6, 50, 'low')`,
		// Within the sub-partitioned partition, across it, into and out
		// of the default partition.
		`UPDATE pr SET id = id + 1000 WHERE k BETWEEN 100 AND 199 AND id % 3 = 0`,
		`UPDATE pr SET k = k + 100 WHERE id % 4 = 1`,
		`UPDATE pr SET k = 10, v = v || ' from default' WHERE k >= 200 AND id % 5 = 2`,
		`DELETE FROM pr WHERE id % 6 = 5`,
		// A partition created through the stream; a table that gets rows,
		// then is attached, and rows moving into it.
		`CREATE TABLE pr_hi PARTITION OF pr FOR VALUES FROM (1000) TO (2000)`,
		`INSERT INTO pr VALUES (1, 1500, 'hi'), (2, 1999, 'hi 2')`,
		`CREATE TABLE pr_att (id int NOT NULL, k int NOT NULL, v text, PRIMARY KEY (id, k))`,
		`INSERT INTO pr_att VALUES (1, 3000, 'attached'), (2, 3500, 'attached 2')`,
		`ALTER TABLE pr ATTACH PARTITION pr_att FOR VALUES FROM (3000) TO (4000)`,
		`UPDATE pr SET v = 'changed after attach' WHERE k = 3000; INSERT INTO pr VALUES (3, 3999, 'attached 3')`,
		`UPDATE pr SET k = 3100 WHERE id = 1 AND k = 1500`,
		`ALTER TABLE pr ADD COLUMN note text DEFAULT 'added to the tree'`,
		`UPDATE pr SET note = 'moved', k = k + 100 WHERE id % 7 = 0 AND k < 900`,
		// A partition detached, then changed on its own at once; its rows'
		// range now goes to the default partition.
		`ALTER TABLE pr DETACH PARTITION pr_low`,
		`INSERT INTO pr_low VALUES (9000, 500, 'outside its old range'); UPDATE pr_low SET v = 'detached' WHERE id % 2 = 0; DELETE FROM pr_low WHERE id % 3 = 1`,
		`INSERT INTO pr VALUES (7, 60, 'low range, now default')`,
		`TRUNCATE pr_hi`,
		// A hash tree created through the stream.
		`CREATE TABLE ph (id int PRIMARY KEY, v text) PARTITION BY HASH (id);
		 CREATE TABLE ph_0 PARTITION OF ph FOR VALUES WITH (MODULUS 3, REMAINDER 0);
		 CREATE TABLE ph_1 PARTITION OF ph FOR VALUES WITH (MODULUS 3, REMAINDER 1);
		 CREATE TABLE ph_2 PARTITION OF ph FOR VALUES WITH (MODULUS 3, REMAINDER 2)`,
		`INSERT INTO ph SELECT g, 'h' || g FROM generate_series(1, 30) g`,
		`UPDATE ph SET id = id + 100 WHERE id % 4 = 0; DELETE FROM ph WHERE id % 5 = 0`,
		// Without a key, duplicates: one of two equal rows changes.
		`UPDATE pl SET region = 'us' WHERE tableoid = 'pl_eu'::regclass AND ctid = (SELECT min(ctid) FROM pl_eu)`,
		`DELETE FROM pl WHERE tableoid = 'pl_other'::regclass AND ctid = (SELECT min(ctid) FROM pl_other)`,
		`UPDATE pl SET region = 'jp', note = NULL WHERE region = 'ca'`,
		`INSERT INTO pl VALUES ('eu', 1, 'a'), ('fr', 5, 'new default')`,
	}, []string{
		`UPDATE pr SET k = k + 1 WHERE id % 2 = 0 AND k < 999`,
		`DELETE FROM pr WHERE k >= 3000`,
		`UPDATE pr_low SET v = 'later'`,
		`TRUNCATE pr_mid`,
		`UPDATE ph SET v = 'later'`,
		`DELETE FROM pl WHERE tableoid = 'pl_eu'::regclass AND ctid = (SELECT max(ctid) FROM pl_eu)`,
		`TRUNCATE pl`,
	})
}

// Inheritance: rows in the parent and in children (the same key in
// several of them), changes through the parent that reach the children,
// changes of the parent alone (ONLY, also TRUNCATE ONLY), ALTERs of the
// parent that propagate (a column added, a column's type changed after
// the children's rows were in the stream), and a child without a key
// (REPLICA IDENTITY FULL) created through the stream.
func TestSchemaInheritance(t *testing.T) {
	e := capturingConf(t, nil, `
CREATE TABLE inh (id int PRIMARY KEY, v text);
CREATE TABLE inh_a (extra int, PRIMARY KEY (id)) INHERITS (inh);
CREATE TABLE inh_b (PRIMARY KEY (id)) INHERITS (inh);
INSERT INTO inh VALUES (1, 'p1'), (2, 'p2'), (3, 'p3');
INSERT INTO inh_a VALUES (1, 'a1', 10), (4, 'a4', 40);
INSERT INTO inh_b VALUES (1, 'b1'), (5, 'b5');`,
		`tables_without_key = "replica_identity_full"`)
	rels := []string{"inh", "ONLY inh", "inh_a", "inh_b", "inh_c"}
	e.points(t, rels, nil, []string{
		`UPDATE inh SET v = v || '!' WHERE id = 1`,
		`UPDATE ONLY inh SET v = 'parent only' WHERE id = 1`,
		`DELETE FROM ONLY inh WHERE id = 2`,
		`DELETE FROM inh WHERE id = 4`,
		`ALTER TABLE inh ADD COLUMN note text DEFAULT 'n'`,
		`UPDATE inh SET note = 'x' WHERE id IN (1, 5)`,
		`ALTER TABLE inh ALTER COLUMN v TYPE varchar(40)`,
		`UPDATE inh SET v = v || '?' WHERE id IN (1, 5)`,
		`CREATE TABLE inh_c (c int) INHERITS (inh)`,
		`INSERT INTO inh_c VALUES (1, 'c1', 'n', 0), (1, 'c1', 'n', 0), (3, 'c3', NULL, 1)`,
		`UPDATE inh SET v = 'via parent' WHERE id = 3`,
		`UPDATE ONLY inh SET id = 6 WHERE id = 1`,
		`DELETE FROM inh_c WHERE ctid = (SELECT min(ctid) FROM inh_c WHERE id = 1)`,
		`INSERT INTO inh_a(id, v, note, extra) VALUES (15, 'a5', 'n', 50)`,
		`TRUNCATE ONLY inh`,
		`INSERT INTO inh VALUES (7, 'after truncate only')`,
	}, []string{
		`UPDATE inh SET v = 'later' WHERE id = 1`,
		`DELETE FROM inh_b`,
		`TRUNCATE inh`,
	})
}

// Columns dropped and added again with the same name and another type
// (in the base backup, through the stream, in one transaction with rows),
// a type change that rewrites values (USING), on a keyed table and on a
// REPLICA IDENTITY FULL one; generated columns (stored, added through the
// stream) and identity columns (GENERATED ALWAYS and BY DEFAULT,
// OVERRIDING SYSTEM VALUE and USER VALUE, SET GENERATED, UPDATE … SET
// DEFAULT, identity added to an existing column) with their sequences.
func TestSchemaColumns(t *testing.T) {
	e := capturingConf(t, nil, `
CREATE TABLE reshaped (id int PRIMARY KEY, gone text, a int, b text, c numeric(10,2));
ALTER TABLE reshaped DROP COLUMN gone;
INSERT INTO reshaped VALUES (1, 10, 'one', 1.50), (2, 20, 'two', 2.25);
CREATE TABLE reshaped_full (a int, b text);
ALTER TABLE reshaped_full REPLICA IDENTITY FULL;
INSERT INTO reshaped_full VALUES (1, 'x'), (1, 'x'), (2, 'y');
CREATE TABLE gen (
  id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  bd bigint GENERATED BY DEFAULT AS IDENTITY (START WITH 100 INCREMENT BY 10) UNIQUE,
  v text,
  g int GENERATED ALWAYS AS (length(v)) STORED);
INSERT INTO gen(v) VALUES ('base'), (NULL);`, "")
	rels := []string{"reshaped", "reshaped_full", "gen"}
	seqs := []string{"gen_id_seq", "gen_bd_seq", "reshaped_id_seq"}
	e.run(t, `ALTER TABLE reshaped DROP COLUMN a`,
		`ALTER TABLE reshaped ADD COLUMN a text DEFAULT 'new a'`,
		`INSERT INTO reshaped(id, a, b, c) VALUES (3, 'three', 'b3', 3)`,
		`UPDATE reshaped SET a = 'changed' WHERE id = 1`,
		`ALTER TABLE reshaped DROP COLUMN b; ALTER TABLE reshaped ADD COLUMN b int[];
		 INSERT INTO reshaped(id, b) VALUES (4, '{1,2}'); UPDATE reshaped SET b = '{3}' WHERE id = 2`,
		`ALTER TABLE reshaped ALTER COLUMN c TYPE text USING c::text || '!'`,
		`UPDATE reshaped SET c = c || '?' WHERE id = 3`,
		`ALTER TABLE reshaped ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY (START WITH 50)`,
		`INSERT INTO reshaped(a) VALUES ('identity now'), ('identity again')`,
	)
	// Without a key, the old row image changes with the columns.
	e.run(t, `ALTER TABLE reshaped_full ADD COLUMN c int`,
		`UPDATE reshaped_full SET c = 5 WHERE ctid = (SELECT min(ctid) FROM reshaped_full WHERE a = 1)`,
		`ALTER TABLE reshaped_full DROP COLUMN b`,
		`DELETE FROM reshaped_full WHERE a = 1 AND c IS NULL`,
		`ALTER TABLE reshaped_full ADD COLUMN b bigint`,
		`UPDATE reshaped_full SET b = 7 WHERE a = 2`,
		`INSERT INTO reshaped_full VALUES (3, NULL, 8), (3, NULL, 8)`,
		`UPDATE reshaped_full SET c = 9 WHERE ctid = (SELECT max(ctid) FROM reshaped_full WHERE a = 3)`,
	)
	e.run(t, `INSERT INTO gen(v) VALUES ('stream')`,
		`INSERT INTO gen(id, bd, v) OVERRIDING SYSTEM VALUE VALUES (1000, 5, 'overriding system')`,
		`INSERT INTO gen(bd, v) VALUES (7, 'explicit by default')`,
		`INSERT INTO gen(bd, v) OVERRIDING USER VALUE VALUES (9, 'overriding user')`,
		`UPDATE gen SET v = 'a longer value' WHERE id = 1`,
		`UPDATE gen SET bd = 55 WHERE id = 2`,
		`ALTER TABLE gen ADD COLUMN g2 text GENERATED ALWAYS AS (upper(v) || ':' || bd) STORED`,
		`UPDATE gen SET bd = bd + 1 WHERE v = 'stream'`,
		`ALTER TABLE gen ALTER COLUMN bd SET GENERATED ALWAYS`,
		`INSERT INTO gen(v) VALUES ('bd always')`,
		`INSERT INTO gen(bd, v) OVERRIDING SYSTEM VALUE VALUES (3, 'bd overridden')`,
		`DELETE FROM gen WHERE v IS NULL`,
		// Identity columns GENERATED ALWAYS take only DEFAULT in an
		// UPDATE: a key changed so, another column of a table whose ALWAYS
		// column is not its key.
		`UPDATE gen SET id = DEFAULT WHERE v = 'a longer value'`,
		`UPDATE gen SET v = 'bd is always' WHERE v = 'stream'`,
		`UPDATE gen SET bd = DEFAULT WHERE v = 'bd overridden'`,
	)
	e.points(t, rels, seqs, nil, []string{
		`INSERT INTO gen(v) VALUES ('after')`,
		`UPDATE reshaped SET a = 'later'`,
		`ALTER TABLE reshaped DROP COLUMN a`,
		`DELETE FROM reshaped_full WHERE a = 3`,
		`INSERT INTO reshaped(c) VALUES ('after')`,
	})
}

// typedCols are the columns of the typed tables; typedRow is a row of
// them, variant v picking among a few value sets.
const typedCols = `m mood, ma mood[], d posint, da posint[], s shortcode, c pair, ca pair[],
  r int4range, ra int4range[], nr numrange, mr int4multirange, fr floatrange, fmr floatmultirange, tr tstzrange,
  t text COLLATE ci, ta text[] COLLATE ci, de text COLLATE de_icu`

func typedRow(v int) string {
	rows := []string{
		`'happy', '{sad,happy}', 5, '{1,2,NULL}', 'ab', ROW(1, 'x y', 'sad'), ARRAY[ROW(2, 'q"uote', 'happy')::pair, NULL],
		 '[1,10)', '{"[1,2)",empty}', '[1.0,2.50)', '{[1,3),[5,7)}', '[0.5,1e10)', '{[-Infinity,0], [1,2)}', '[2026-01-01 00:00+00,)',
		 'MiXeD', '{Ab,aB}', 'a'`,
		`'sad', '{}', 1, '{}', '', ROW(NULL, NULL, NULL), '{}', 'empty', '{}', '(,)', '{}', 'empty', '{}', 'empty', 'abc', '{}', 'ä'`,
		`NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 'B'`,
	}
	return rows[v%len(rows)]
}

// User-defined types: enums that grow (ADD VALUE BEFORE/AFTER, then used;
// a value renamed), domains with checks (and arrays of them, a check added
// later to another, a domain created through the stream), composites (an attribute
// added through the stream), ranges and multiranges (built-in and user
// defined, one created through the stream), arrays of all of these, and
// ICU collations (nondeterministic too); on a keyed table, a REPLICA
// IDENTITY FULL table with duplicates and rows that differ only where
// equality is coarser than the text, and a REPLICA IDENTITY USING INDEX
// table whose key is a domain, an enum and a range.
func TestSchemaTypes(t *testing.T) {
	e := capturingConf(t, nil, `
CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE COLLATION de_icu (provider = icu, locale = 'de-DE');
CREATE TYPE mood AS ENUM ('sad', 'happy');
CREATE DOMAIN posint AS int CHECK (VALUE > 0);
CREATE DOMAIN shortcode AS text CHECK (length(VALUE) <= 5);
CREATE TYPE pair AS (x posint, label text, m mood);
CREATE TYPE floatrange AS RANGE (subtype = float8);
CREATE TABLE typed (id int PRIMARY KEY, `+typedCols+`);
CREATE TABLE typed_full (id int, `+typedCols+`);
ALTER TABLE typed_full REPLICA IDENTITY FULL;
CREATE TABLE typed_idx (k shortcode NOT NULL, m mood NOT NULL, r int4range NOT NULL, t text COLLATE ci, v pair, n numeric);
CREATE UNIQUE INDEX typed_idx_key ON typed_idx (k, m, r);
ALTER TABLE typed_idx REPLICA IDENTITY USING INDEX typed_idx_key;
INSERT INTO typed VALUES (1, `+typedRow(0)+`), (2, `+typedRow(1)+`);
INSERT INTO typed_full VALUES (1, `+typedRow(0)+`), (1, `+typedRow(0)+`), (2, `+typedRow(1)+`);
INSERT INTO typed_idx VALUES ('ab', 'sad', '[1,2)', 'abc', ROW(1, 'one', 'sad'), 1.0), ('ab', 'happy', '[1,2)', 'ABC', NULL, 2);`, "")
	rels := []string{"typed", "typed_full", "typed_idx",
		// What sorting shows: enum order, collations (subqueries are
		// compared as relations are).
		"(SELECT string_agg(enumlabel, ',' ORDER BY enumsortorder) FROM pg_enum WHERE enumtypid = 'mood'::regtype)",
		"(SELECT string_agg(m::text, ',' ORDER BY m, id) FROM typed_full)",
		"(SELECT string_agg(de, ',' ORDER BY de, id) FROM typed_full)",
		"(SELECT count(DISTINCT t) FROM typed_full)",
	}
	e.run(t,
		`INSERT INTO typed VALUES (3, `+typedRow(2)+`); INSERT INTO typed_full VALUES (3, `+typedRow(2)+`), (3, `+typedRow(2)+`)`,
		`ALTER TYPE mood ADD VALUE 'ok' BEFORE 'happy'`,
		`ALTER TYPE mood ADD VALUE 'awful' BEFORE 'sad'`,
		`ALTER TYPE mood ADD VALUE 'ecstatic' AFTER 'happy'`,
		`INSERT INTO typed(id, m, ma, c) VALUES (4, 'ok', '{ecstatic,awful,ok}', ROW(4, 'new values', 'ecstatic'))`,
		`INSERT INTO typed_full(id, m, ma, de) VALUES (4, 'awful', '{ok}', 'b'), (4, 'ecstatic', NULL, 'Z')`,
		`UPDATE typed SET m = 'ok', ma = ma || 'ecstatic'::mood WHERE id = 1`,
		`UPDATE typed_full SET m = 'ok', ma = ma || 'awful'::mood, ca = ca || ROW(3, 'three', 'ok')::pair
		 WHERE ctid = (SELECT min(ctid) FROM typed_full WHERE id = 1)`,
		`DELETE FROM typed_full WHERE ctid = (SELECT max(ctid) FROM typed_full WHERE id = 3)`,
		`UPDATE typed_full SET fmr = '{[3,4)}', mr = mr + '{[20,30)}' WHERE id = 2`,
		// Rows that differ only where equality is coarser than the text:
		// a nondeterministic collation, a numeric range bound.
		`INSERT INTO typed_full(id, t, nr) VALUES (10, 'abc', '[1.0,2)'), (10, 'ABC', '[1.0,2)'), (10, 'abc', '[1.00,2)')`,
		`UPDATE typed_full SET id = 11 WHERE id = 10 AND t COLLATE "C" = 'ABC'`,
		`DELETE FROM typed_full WHERE id = 10 AND nr::text = '[1.00,2)'`,
		// The identity index's key: a domain, an enum and a range.
		`INSERT INTO typed_idx VALUES ('cd', 'ok', '[5,6)', 'x', ROW(2, 'two', 'ok'), 1.50)`,
		`UPDATE typed_idx SET m = 'ecstatic', n = 2.00 WHERE k = 'ab' AND m = 'happy'`,
		`UPDATE typed_idx SET r = '[1,3)', t = 'ABC' WHERE k = 'ab' AND m = 'sad'`,
		`UPDATE typed_idx SET v = ROW(3, 'three', 'awful') WHERE k = 'cd'`,
		`DELETE FROM typed_idx WHERE k = 'ab' AND m = 'ecstatic'`,
		`ALTER TYPE mood RENAME VALUE 'sad' TO 'blue'`,
		`UPDATE typed_full SET t = 'after rename' WHERE m = 'blue'`,
		`UPDATE typed_idx SET n = 3 WHERE m = 'blue'`,
		// Types that change or arrive through the stream.
		`ALTER TYPE pair ADD ATTRIBUTE note text`,
		`UPDATE typed SET c = ROW(3, 'with note', 'ok', 'n')::pair WHERE id = 2`,
		`UPDATE typed_full SET c = ROW(3, 'with note', 'ok', 'n')::pair WHERE id = 2`,
		`ALTER DOMAIN shortcode ADD CONSTRAINT no_space CHECK (VALUE NOT LIKE '% %')`,
		`CREATE DOMAIN evenint AS int CHECK (VALUE % 2 = 0); ALTER TABLE typed ADD COLUMN e evenint[]`,
		`UPDATE typed SET e = '{2,4}' WHERE id = 1`,
		`CREATE TYPE textrange AS RANGE (subtype = text, collation = "C");
		 ALTER TABLE typed_full ADD COLUMN tx textrange, ADD COLUMN txm textmultirange, ADD COLUMN txa textrange[]`,
		`INSERT INTO typed_full(id, tx, txm, txa) VALUES (20, '[a,b)', '{[a,b), [x,z]}', '{"[a,b)"}'), (20, '[a,b)', '{[a,b), [x,z]}', '{"[a,b)"}')`,
		`UPDATE typed_full SET tx = '[c,d)' WHERE ctid = (SELECT min(ctid) FROM typed_full WHERE id = 20)`,
	)
	e.points(t, rels, nil, nil, []string{
		`ALTER TYPE mood ADD VALUE 'zen' AFTER 'awful'`,
		`UPDATE typed_full SET m = 'zen' WHERE id = 4`,
		`DELETE FROM typed_idx WHERE k = 'cd'`,
		`DELETE FROM typed_full WHERE id = 1`,
		`UPDATE typed SET m = 'zen'`,
	})
}

// roles creates roles on both clusters (policies and grants name them, so
// the base backup restores only where they exist) and drops them when the
// test's databases are gone.
func roles(t *testing.T, names ...string) {
	t.Helper()
	for _, c := range []*pgtest.Cluster{source, target} {
		for _, n := range names {
			c.Exec(t, "postgres", fmt.Sprintf("DO $$ BEGIN CREATE ROLE %s; EXCEPTION WHEN duplicate_object THEN NULL; END $$", n))
		}
	}
	// Registered before the databases are made: runs after they are dropped.
	t.Cleanup(func() {
		for _, c := range []*pgtest.Cluster{source, target} {
			for _, n := range names {
				c.Exec(t, "postgres", "DROP ROLE IF EXISTS "+n)
			}
		}
	})
}

// Rules (DO INSTEAD on a view for INSERT, UPDATE and DELETE, DO INSTEAD
// on a table turning DELETE into a soft delete, DO ALSO logging into
// another table, rules set ENABLE ALWAYS and ENABLE REPLICA, which
// session_replication_role does not silence, a rule created through the
// stream) and row-level security
// (policies enabled and forced, rows written by roles under them, so each
// role's UPDATE reaches only its rows; a policy changed through the
// stream). Replay does not fire the rules again (their effects are in the
// stream) and is not held back by the policies.
func TestSchemaRulesAndRowLevelSecurity(t *testing.T) {
	roles(t, "schema_alice", "schema_bob", "schema_owner")
	e := capturingConf(t, nil, `
CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL DEFAULT current_user, balance numeric NOT NULL, deleted bool NOT NULL DEFAULT false);
CREATE TABLE audit (id serial PRIMARY KEY, what text, account int);
CREATE VIEW accounts_v AS SELECT id, balance FROM accounts WHERE NOT deleted;
CREATE RULE accounts_v_ins AS ON INSERT TO accounts_v DO INSTEAD INSERT INTO accounts(id, owner, balance) VALUES (NEW.id, 'via view', NEW.balance);
CREATE RULE accounts_v_upd AS ON UPDATE TO accounts_v DO INSTEAD UPDATE accounts SET balance = NEW.balance WHERE id = OLD.id;
CREATE RULE accounts_v_del AS ON DELETE TO accounts_v DO INSTEAD DELETE FROM accounts WHERE id = OLD.id;
CREATE RULE accounts_log AS ON UPDATE TO accounts WHERE OLD.balance <> NEW.balance
  DO ALSO INSERT INTO audit(what, account) VALUES (OLD.balance || ' -> ' || NEW.balance, NEW.id);
CREATE RULE accounts_soft_delete AS ON DELETE TO accounts WHERE OLD.owner <> 'via view' DO INSTEAD UPDATE accounts SET deleted = true WHERE id = OLD.id;
ALTER TABLE accounts ENABLE ROW LEVEL SECURITY;
ALTER TABLE accounts FORCE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON accounts USING (owner = current_user) WITH CHECK (owner = current_user AND balance >= 0);
GRANT SELECT, INSERT, UPDATE, DELETE ON accounts, accounts_v TO schema_alice, schema_bob;
GRANT USAGE ON SEQUENCE audit_id_seq TO schema_alice, schema_bob, schema_owner;
GRANT INSERT ON audit TO schema_owner;
CREATE TABLE notes (id int PRIMARY KEY, author text NOT NULL DEFAULT current_user, body text);
ALTER TABLE notes OWNER TO schema_owner;
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
ALTER TABLE notes FORCE ROW LEVEL SECURITY;
CREATE POLICY mine ON notes USING (author = current_user);
CREATE POLICY readers ON notes FOR SELECT TO schema_alice USING (true);
GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO schema_alice, schema_bob;
INSERT INTO accounts VALUES (100, 'schema_alice', 1000), (200, 'schema_bob', 2), (300, 'nobody', 3);
INSERT INTO notes VALUES (1, 'schema_owner', 'by the owner'), (2, 'schema_bob', 'by bob');
CREATE RULE notes_always AS ON UPDATE TO notes DO ALSO INSERT INTO audit(what, account) VALUES ('always ' || NEW.id, NEW.id);
CREATE RULE notes_replica AS ON UPDATE TO notes DO ALSO INSERT INTO audit(what, account) VALUES ('replica ' || NEW.id, NEW.id);
ALTER TABLE notes ENABLE ALWAYS RULE notes_always;
ALTER TABLE notes ENABLE REPLICA RULE notes_replica;`, "")
	rels := []string{"accounts", "audit", "notes",
		"(SELECT string_agg(rulename || ' ' || ev_enabled::text || ' ' || pg_get_ruledef(r.oid), E'\\n' ORDER BY rulename) FROM pg_rewrite r WHERE rulename <> '_RETURN')",
		"(SELECT string_agg(polname || ' ' || polcmd::text || ' ' || polroles::regrole[]::text || ' ' || coalesce(pg_get_expr(polqual, polrelid), '') || ' ' || coalesce(pg_get_expr(polwithcheck, polrelid), ''), E'\\n' ORDER BY polname) FROM pg_policy)",
		"(SELECT string_agg(relname || ' ' || relrowsecurity || ' ' || relforcerowsecurity, ',' ORDER BY relname) FROM pg_class WHERE relname IN ('accounts', 'notes'))",
	}
	seqs := []string{"audit_id_seq"}
	e.run(t,
		`SET ROLE schema_alice; INSERT INTO accounts(id, balance) VALUES (1, 100), (2, 50); UPDATE accounts SET balance = balance - 10; RESET ROLE`,
		`SET ROLE schema_bob; INSERT INTO accounts(id, balance) VALUES (10, 7); UPDATE accounts SET balance = 0; RESET ROLE`,
		`SET ROLE schema_alice; DELETE FROM accounts WHERE id = 2; RESET ROLE`,
		`SET ROLE schema_bob; INSERT INTO accounts_v VALUES (11, 5); UPDATE accounts_v SET balance = 6 WHERE id = 11; RESET ROLE`,
		`SET ROLE schema_bob; DELETE FROM accounts_v WHERE id = 11; RESET ROLE`,
		`UPDATE accounts SET balance = balance + 1 WHERE NOT deleted`,
		`SET ROLE schema_owner; INSERT INTO notes(id, body) VALUES (3, 'owner again'); UPDATE notes SET body = body || '!'; RESET ROLE`,
		`SET ROLE schema_bob; UPDATE notes SET body = 'bob edits'; DELETE FROM notes WHERE id = 1; RESET ROLE`,
		`ALTER POLICY own_rows ON accounts WITH CHECK (owner = current_user)`,
		`SET ROLE schema_alice; UPDATE accounts SET balance = -5 WHERE id = 1; RESET ROLE`,
		`CREATE VIEW notes_v AS SELECT id, body FROM notes;
		 CREATE RULE notes_v_upd AS ON UPDATE TO notes_v DO INSTEAD UPDATE notes SET body = NEW.body WHERE id = OLD.id`,
		`UPDATE notes_v SET body = 'through the new rule' WHERE id = 2`,
	)
	e.points(t, rels, seqs, nil, []string{
		`SET ROLE schema_alice; UPDATE accounts SET balance = 1000; DELETE FROM accounts WHERE id = 1; RESET ROLE`,
		`UPDATE accounts SET balance = 2 WHERE id = 300`,
		`DROP RULE accounts_log ON accounts`,
		`UPDATE accounts SET balance = 3 WHERE id = 300`,
	})
}

// Names that need quoting: mixed case, spaces, quotes, dots, commas,
// backslashes, keywords, unicode, exactly 63 bytes, and longer (cut to
// 63 bytes, or fewer where a character would straddle the limit); enum
// labels that need quoting in arrays; in schemas, tables, columns and
// indexes, made before the base backup and through the stream (created,
// renamed, a schema renamed), with a key, REPLICA IDENTITY FULL and
// USING INDEX.
func TestSchemaQuotedNames(t *testing.T) {
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
	name63 := "Ünïcødé Tablé " + strings.Repeat("x", 63-len("Ünïcødé Tablé "))
	col63 := "cöl " + strings.Repeat("ü", 29)
	long := strings.Repeat("l", 62) + "éé" // PostgreSQL keeps the 62 bytes before the first é
	longCol := "Ü" + strings.Repeat("c", 70)
	if len(name63) != 63 || len(col63) != 63 {
		t.Fatalf("names of %d and %d bytes", len(name63), len(col63))
	}
	e := capturingConf(t, nil, `
CREATE SCHEMA "Mixed Schema";
CREATE SCHEMA "we""ird.schema";
CREATE TYPE "Status Type" AS ENUM ('it''s', 'a "b"', 'ünï', 'NULL', 'x,y', '{}');
CREATE TABLE "Mixed Schema"."Order Items" ("Id" int GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "select" text, "col ""quoted""" int,
  "ünïcødé 列" text, "UPPER" numeric, "a.b" int, "x,y" text, "back\slash" text, "$1" int, "Status" "Status Type", "Statuses" "Status Type"[]);
CREATE TABLE "we""ird.schema"."table" ("user" text, "group" int, "from where" text, "tab	tab" "Status Type");
ALTER TABLE "we""ird.schema"."table" REPLICA IDENTITY FULL;
CREATE TABLE public.`+q(name63)+` (`+q(col63)+` int NOT NULL, "order" text);
CREATE UNIQUE INDEX "Index ""Q"" ü" ON public.`+q(name63)+` (`+q(col63)+`);
ALTER TABLE public.`+q(name63)+` REPLICA IDENTITY USING INDEX "Index ""Q"" ü";
INSERT INTO "Mixed Schema"."Order Items"("select", "col ""quoted""", "ünïcødé 列", "UPPER", "a.b", "x,y", "back\slash", "$1", "Status", "Statuses")
  VALUES ('from', 1, '列', 1.5, 2, 'x,y', 'a\b', 3, 'it''s', '{"a \"b\"",NULL,"NULL","x,y","{}"}'), ('where', 2, NULL, NULL, NULL, NULL, NULL, NULL, 'NULL', '{}');
INSERT INTO "we""ird.schema"."table" VALUES ('u', 1, 'a', 'ünï'), ('u', 1, 'a', 'ünï'), ('v', 2, NULL, '{}');
INSERT INTO public.`+q(name63)+` VALUES (1, 'one'), (2, 'two');`, "")
	items := `"Mixed Schema"."Order Items"`
	rels := []string{items, `"Renamed ""Schema"""."table"`, "public." + q(name63), `"Mixed Schema"."Renamed Table"`, q(long),
		`(SELECT string_agg(quote_ident(nspname) || '.' || quote_ident(relname), ',' ORDER BY nspname, relname) FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace WHERE relkind = 'r' AND nspname NOT IN ('pg_catalog', 'information_schema', 'btfu'))`,
	}
	e.run(t,
		`UPDATE `+items+` SET "select" = 'changed', "Status" = 'a "b"', "Statuses" = "Statuses" || 'it''s'::"Status Type" WHERE "Id" = 1`,
		`UPDATE `+items+` SET "Id" = 10 WHERE "Id" = 2`,
		`ALTER TABLE `+items+` RENAME COLUMN "select" TO "Select Me"`,
		`ALTER TABLE `+items+` ADD COLUMN "ADD" text DEFAULT 'x'`,
		`INSERT INTO `+items+`("Select Me", "ADD", "Status") VALUES ('after rename', 'y', 'x,y')`,
		`UPDATE `+items+` SET "ADD" = 'z', "x,y" = 'new' WHERE "Id" = 1`,
		`DELETE FROM `+items+` WHERE "Id" = 10`,
		`UPDATE "we""ird.schema"."table" SET "group" = 3 WHERE ctid = (SELECT min(ctid) FROM "we""ird.schema"."table" WHERE "user" = 'u')`,
		`DELETE FROM "we""ird.schema"."table" WHERE "tab	tab" = '{}'`,
		`ALTER SCHEMA "we""ird.schema" RENAME TO "Renamed ""Schema"""`,
		`INSERT INTO "Renamed ""Schema"""."table" VALUES ('w', 4, 'after', 'NULL'), ('w', 4, 'after', 'NULL')`,
		`UPDATE "Renamed ""Schema"""."table" SET "from where" = 'changed' WHERE ctid = (SELECT max(ctid) FROM "Renamed ""Schema"""."table" WHERE "user" = 'w')`,
		`UPDATE public.`+q(name63)+` SET `+q(col63)+` = 3, "order" = 'three' WHERE `+q(col63)+` = 1`,
		`DELETE FROM public.`+q(name63)+` WHERE `+q(col63)+` = 2`,
		`CREATE TABLE "Mixed Schema"."New ""Table""" ("Key Col" text PRIMARY KEY, "VALUE" int)`,
		`INSERT INTO "Mixed Schema"."New ""Table""" VALUES ('k "1"', 1), ('K 2', 2)`,
		`ALTER TABLE "Mixed Schema"."New ""Table""" RENAME TO "Renamed Table"`,
		`UPDATE "Mixed Schema"."Renamed Table" SET "Key Col" = 'k ''3''' WHERE "VALUE" = 1`,
		`CREATE TABLE `+q(long)+` (id int PRIMARY KEY, `+q(longCol)+` text)`,
		`INSERT INTO `+q(long)+` VALUES (1, 'a'), (2, 'b')`,
		`UPDATE `+q(long)+` SET `+q(longCol)+` = 'changed' WHERE id = 1`,
	)
	e.points(t, rels, []string{`"Mixed Schema"."Order Items_Id_seq"`}, nil, []string{
		`INSERT INTO ` + items + `("Select Me") VALUES ('later')`,
		`DELETE FROM "Renamed ""Schema"""."table" WHERE "user" = 'w'`,
		`UPDATE ` + q(long) + ` SET id = 3 WHERE id = 2`,
	})
}

// Sequences: owned by a serial column, identity sequences (also after
// TRUNCATE … RESTART IDENTITY and a value above the sequence inserted
// with OVERRIDING SYSTEM VALUE), one sequence used by two tables (owned
// by one), cycled ones past their wrap and descending ones, owned by a
// column and not, one never used, one restarted (is_called false), one
// set with setval, one whose increment changed, one created through the
// stream, one near the bigint limit. Each restored sequence hands out no
// value the source had handed out at the point.
func TestSchemaSequences(t *testing.T) {
	e := capturingConf(t, nil, `
CREATE TABLE owned (id serial PRIMARY KEY, v text);
CREATE TABLE ident (id bigint GENERATED ALWAYS AS IDENTITY (START WITH 10 INCREMENT BY 5) PRIMARY KEY, v text);
CREATE SEQUENCE shared_seq;
CREATE TABLE shared_a (id bigint PRIMARY KEY DEFAULT nextval('shared_seq'), v text);
CREATE TABLE shared_b (id bigint PRIMARY KEY DEFAULT nextval('shared_seq'), v text);
ALTER SEQUENCE shared_seq OWNED BY shared_a.id;
CREATE SEQUENCE cyc MINVALUE 1 MAXVALUE 5 CYCLE;
CREATE SEQUENCE down INCREMENT BY -1 MINVALUE -1000 MAXVALUE -1 START WITH -1;
CREATE TABLE down_t (id int PRIMARY KEY DEFAULT nextval('down'), v text);
CREATE SEQUENCE unused;
CREATE SEQUENCE restarted;
CREATE SEQUENCE big START WITH 9223372036854775000;
CREATE TABLE down_owned_t (id int PRIMARY KEY, v text);
CREATE SEQUENCE down_owned INCREMENT BY -3 MAXVALUE -1 START WITH -1 OWNED BY down_owned_t.id;
ALTER TABLE down_owned_t ALTER COLUMN id SET DEFAULT nextval('down_owned');
CREATE TABLE slots (n int, v text);
ALTER TABLE slots REPLICA IDENTITY FULL;
CREATE SEQUENCE slot_seq MINVALUE 1 MAXVALUE 5 CYCLE OWNED BY slots.n;
ALTER TABLE slots ALTER COLUMN n SET DEFAULT nextval('slot_seq');
INSERT INTO down_owned_t(v) VALUES ('a');
INSERT INTO owned(v) VALUES ('a'), ('b');
INSERT INTO ident(v) VALUES ('a');
INSERT INTO shared_a(v) VALUES ('a'); INSERT INTO shared_b(v) VALUES ('b');
SELECT nextval('cyc');
INSERT INTO down_t(v) VALUES ('a');
SELECT nextval('restarted') FROM generate_series(1, 3);`, "")
	rels := []string{"owned", "ident", "shared_a", "shared_b", "down_t", "down_owned_t", "slots"}
	seqs := []string{"owned_id_seq", "ident_id_seq", "shared_seq", "cyc", "down", "unused", "restarted", "late", "big", "down_owned", "slot_seq"}
	e.run(t,
		`INSERT INTO owned(v) VALUES ('c'), ('d'), ('e')`,
		`DELETE FROM owned WHERE v = 'e'`, // the sequence is ahead of the column
		`SELECT setval('owned_id_seq', 500); INSERT INTO owned(v) VALUES ('after setval')`,
		`INSERT INTO ident(v) VALUES ('b'), ('c')`,
		`TRUNCATE ident RESTART IDENTITY; INSERT INTO ident(v) VALUES ('after restart')`,
		`INSERT INTO ident(id, v) OVERRIDING SYSTEM VALUE VALUES (1000, 'above the sequence')`,
		`INSERT INTO shared_a(v) VALUES ('a2'); INSERT INTO shared_b(v) VALUES ('b2'), ('b3')`,
		`ALTER SEQUENCE shared_seq INCREMENT BY 10`,
		`INSERT INTO shared_b(v) VALUES ('b4'); INSERT INTO shared_a(v) VALUES ('a3'); INSERT INTO shared_b(v) VALUES ('b5')`,
		`SELECT nextval('cyc') FROM generate_series(1, 7)`, // 2, 3, 4, 5, 1, 2, 3
		`INSERT INTO down_t(v) VALUES ('b'), ('c'); SELECT nextval('down') FROM generate_series(1, 2)`,
		`ALTER SEQUENCE restarted RESTART WITH 100`,
		`CREATE SEQUENCE late START WITH 1000 INCREMENT BY 7; SELECT nextval('late'), nextval('late')`,
		`SELECT nextval('big') FROM generate_series(1, 3)`,
		// Owned by a column: the column's largest value is the first a
		// descending sequence handed out, and from before the wrap for a
		// cycled one.
		`INSERT INTO down_owned_t(v) VALUES ('b'), ('c'), ('d')`,
		`INSERT INTO slots(v) SELECT 'r' || g FROM generate_series(1, 7) g`, // 1..5, 1, 2
	)
	e.points(t, rels, seqs, nil, []string{
		`INSERT INTO owned(v) VALUES ('later')`,
		`INSERT INTO shared_b(v) VALUES ('later')`,
		`INSERT INTO down_t(v) VALUES ('later'); INSERT INTO down_owned_t(v) VALUES ('later')`,
		`DELETE FROM slots WHERE n = 1`,
		`SELECT nextval('late'), nextval('restarted'), nextval('big')`,
	})
}

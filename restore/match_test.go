package restore

import (
	"fmt"
	"testing"

	"github.com/btfu/btfu/internal/pgtest"
)

// tableHash is a table's contents as one md5, rows in text order.
func tableHash(t *testing.T, c *pgtest.Cluster, db, tbl string) string {
	t.Helper()
	return pgtest.QueryValue[string](t, c, db, fmt.Sprintf("SELECT coalesce(md5(string_agg(whole_row::text, '|' ORDER BY whole_row::text)), 'empty') || ' ' || count(*) FROM %s whole_row", tbl))
}

// REPLICA IDENTITY FULL rows are matched on every column, one row at a
// time: by text form where the type has no equality operator (json,
// point, xml, ... and arrays, domains and composites of them), and with
// the text form next to '=' where equality is coarser than the text
// (numeric 1.0 = 1.00, float -0 = 0, interval, jsonb, a nondeterministic
// collation), so of two rows that differ only there the one the source
// changed is the one replay changes (DESIGN 4.5).
func TestFullIdentityRowsMatchTypesWithoutEquality(t *testing.T) {
	e := capturingWith(t, nil, `
CREATE COLLATION ci (provider = icu, locale = 'und-u-ks-level2', deterministic = false);
CREATE DOMAIN jdom AS json;
CREATE TYPE pt_pair AS (p point, label text);
CREATE TABLE odd(i int, j json, jb jsonb, pt point, bx box, pg polygon, ci circle, ln line, ls lseg, pa path, x xml,
  ja json[], pta point[], jd jdom, cp pt_pair, cpa pt_pair[], n numeric, f float8, iv interval, ct text COLLATE ci);
ALTER TABLE odd REPLICA IDENTITY FULL;
CREATE INDEX ON odd (i);
INSERT INTO odd(i, j, pt, x) VALUES (0, '{"in": "base"}', '(0,0)', '<base/>'), (0, '{"in": "base"}', '(0,0)', '<base/>'), (-1, '[1, 2]', '(1.5,-2)', '<a>x</a>');`)
	row := `(%d, '{"k": [1, 2.50, null],  "dup": 1, "dup": 2}', '{"z": 1, "a": {"b": "c"}}', '(1.5,-2.25)', '(1,1),(0,0)', '((0,0),(1,1),(1,0))', '<(1,1),2>',
		'{1,-1,0}', '[(0,0),(1,1)]', '((0,0),(1,1),(2,0))', '<doc a="1">text &amp; more</doc>', ARRAY['{"a":1}', '[]']::json[], '{"(1,2)","(3.5,4)"}', '{"d": true}',
		ROW('(7,8)', 'label x'), ARRAY[ROW('(1,1)', 'a'), ROW(NULL, NULL)]::pt_pair[], 12.5, 0.1, '1 day', 'MiXeD')`
	// Rows that differ only where equality is coarser than the text.
	coarse := `(10, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, %s, %s, %s, %s)`
	source.Exec(t, e.db, `INSERT INTO odd VALUES `+fmt.Sprintf(row, 1)+`, `+fmt.Sprintf(row, 1)+`, `+fmt.Sprintf(row, 2)+`,
		(3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);`)
	source.Exec(t, e.db, `INSERT INTO odd VALUES `+
		fmt.Sprintf(coarse, "1.0", "0", "'1 day'", "'abc'")+`, `+fmt.Sprintf(coarse, "1.00", "0", "'1 day'", "'abc'")+`, `+
		fmt.Sprintf(coarse, "1.0", "'-0'", "'1 day'", "'abc'")+`, `+fmt.Sprintf(coarse, "1.0", "0", "'24 hours'", "'abc'")+`, `+
		fmt.Sprintf(coarse, "1.0", "0", "'1 day'", "'ABC'"))
	source.Exec(t, e.db, `UPDATE odd SET jb = '{"a": 1.0}' WHERE i = 10; INSERT INTO odd(i, jb) VALUES (11, '{"a": 1.0}'), (11, '{"a": 1.00}');`)
	// Each statement changes one of several rows that match by equality.
	for _, sql := range []string{
		`UPDATE odd SET i = 100 WHERE ctid = (SELECT min(ctid) FROM odd WHERE i = 1)`,
		`DELETE FROM odd WHERE ctid = (SELECT max(ctid) FROM odd WHERE i = 1)`,
		`UPDATE odd SET j = '{"changed": true}', pt = '(9,9)' WHERE i = 2`,
		`UPDATE odd SET x = '<changed/>' WHERE i = 100`,
		`DELETE FROM odd WHERE ctid = (SELECT max(ctid) FROM odd WHERE i = 0)`,
		`UPDATE odd SET pt = '(2,2)' WHERE i = -1`,
		`UPDATE odd SET i = 3 WHERE i = 3`, // no column changes: the row must still be there
		`DELETE FROM odd WHERE i = 10 AND n::text = '1.00'`,
		`DELETE FROM odd WHERE i = 10 AND f::text = '-0'`,
		`DELETE FROM odd WHERE i = 10 AND iv::text = '24:00:00'`,
		`UPDATE odd SET i = 12 WHERE i = 10 AND ct::text = 'ABC'`,
		`DELETE FROM odd WHERE i = 11 AND jb::text = '{"a": 1.00}'`,
	} {
		source.Exec(t, e.db, sql)
	}
	m := e.mark(t, "full identity")
	want := tableHash(t, source, e.db, "odd")
	e.waitStored(t, m)
	db, _, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	if got := tableHash(t, target, db, "odd"); got != want {
		t.Errorf("odd restored as %s, source held %s:\n%s", got, want,
			pgtest.QueryValue[string](t, target, db, "SELECT string_agg(whole_row::text, E'\\n' ORDER BY whole_row::text) FROM odd whole_row"))
	}
}

// A domain check added NOT VALID holds for new values only: rows that
// break it stay, and replay still finds them by key and under REPLICA
// IDENTITY FULL (old values are read as the domain's base type).
func TestRowMatchingIgnoresNotValidDomainChecks(t *testing.T) {
	e := capturingWith(t, nil, `CREATE DOMAIN things AS int; CREATE DOMAIN small_things AS things;
		CREATE TABLE thethings (stuff small_things); ALTER TABLE thethings REPLICA IDENTITY FULL;
		CREATE TABLE keyed (id things PRIMARY KEY, v text);`)
	source.Exec(t, e.db, `INSERT INTO thethings VALUES (55), (3); INSERT INTO keyed VALUES (55, 'big'), (1, 'small')`)
	source.Exec(t, e.db, `ALTER DOMAIN things ADD CONSTRAINT meow CHECK (VALUE < 11) NOT VALID`)
	source.Exec(t, e.db, `UPDATE thethings SET stuff = 10 WHERE stuff = 55; UPDATE keyed SET v = 'still big' WHERE id = 55; DELETE FROM keyed WHERE id = 1`)
	m := e.mark(t, "not valid")
	want := map[string]string{"thethings": tableHash(t, source, e.db, "thethings"), "keyed": tableHash(t, source, e.db, "keyed")}
	e.waitStored(t, m)
	db, _, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	for tbl, h := range want {
		if got := tableHash(t, target, db, tbl); got != h {
			t.Errorf("%s restored as %s, source held %s", tbl, got, h)
		}
	}
}

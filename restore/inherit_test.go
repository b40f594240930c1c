package restore

import "testing"

// pgoutput names the table a change was made in, never its inheritance
// children; replay changes that table alone (ONLY): a parent and its
// children with rows of the same key, UPDATE/DELETE/TRUNCATE ONLY of the
// parent, also under REPLICA IDENTITY FULL.
func TestReplayTouchesOnlyTheTableTheChangeNames(t *testing.T) {
	e := capturingWith(t, nil, `
CREATE TABLE par (id int PRIMARY KEY, v text);
CREATE TABLE kid (extra int, PRIMARY KEY (id)) INHERITS (par);
CREATE TABLE fpar (id int, v text); ALTER TABLE fpar REPLICA IDENTITY FULL;
CREATE TABLE fkid () INHERITS (fpar); ALTER TABLE fkid REPLICA IDENTITY FULL;
CREATE TABLE tpar (id int PRIMARY KEY); CREATE TABLE tkid (PRIMARY KEY (id)) INHERITS (tpar);
INSERT INTO par VALUES (1, 'p1'), (2, 'p2'); INSERT INTO kid VALUES (1, 'k1', 10), (2, 'k2', 20);
INSERT INTO fpar VALUES (1, 'same'); INSERT INTO fkid VALUES (1, 'same');
INSERT INTO tpar VALUES (1); INSERT INTO tkid VALUES (1), (2);`)
	src := func(sql string) { t.Helper(); source.Exec(t, e.db, sql) }
	src(`UPDATE ONLY par SET v = 'parent only' WHERE id = 1; DELETE FROM ONLY par WHERE id = 2`)
	src(`UPDATE ONLY fpar SET v = 'parent only'; DELETE FROM ONLY fkid`)
	src(`TRUNCATE ONLY tpar`)
	src(`UPDATE par SET v = v || '!' WHERE id = 1`)
	m := e.mark(t, "inheritance")
	tables := []string{"ONLY par", "kid", "ONLY fpar", "fkid", "ONLY tpar", "tkid"}
	want := map[string]string{}
	for _, tbl := range tables {
		want[tbl] = tableHash(t, source, e.db, tbl)
	}
	e.waitStored(t, m)
	db, _, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range tables {
		if got := tableHash(t, target, db, tbl); got != want[tbl] {
			t.Errorf("%s restored as %s, source held %s", tbl, got, want[tbl])
		}
	}
}

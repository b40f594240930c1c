package restore

import (
	"context"
	"strings"
	"testing"
)

// What the restore says of a table follows the table, not its name: a
// table left out (no key) that is dropped and made again with a key is
// replayed; a keyless table attached under a published partitioned table,
// and the partitions of a keyless partitioned table that gets a primary
// key, join the publication then (left out of restores from older bases,
// replayed from newer ones), instead of staying "left out" for good.
func TestTableCoverageFollowsDropsAttachesAndKeys(t *testing.T) {
	e := capturingWith(t, nil, `CREATE TABLE pt (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
		CREATE TABLE pt_1 PARTITION OF pt FOR VALUES FROM (0) TO (100);`)
	ctx := context.Background()
	first := firstBase(t, e)
	src := func(sql string) { t.Helper(); source.Exec(t, e.db, sql) }
	src(`CREATE TABLE reborn (a int); INSERT INTO reborn VALUES (1)`)
	src(`CREATE TABLE lone (id int NOT NULL, v text); INSERT INTO lone VALUES (150, 'before the attach')`)
	src(`CREATE TABLE kl (id int NOT NULL, v text) PARTITION BY RANGE (id);
		CREATE TABLE kl_1 PARTITION OF kl FOR VALUES FROM (0) TO (100); INSERT INTO kl VALUES (1, 'keyless')`)
	src(`DROP TABLE reborn; CREATE TABLE reborn (id int PRIMARY KEY, a int); INSERT INTO reborn VALUES (1, 1), (2, 2)`)
	src(`ALTER TABLE pt ATTACH PARTITION lone FOR VALUES FROM (100) TO (200)`)
	src(`ALTER TABLE kl ADD PRIMARY KEY (id)`)
	src(`INSERT INTO pt VALUES (151, 'after the attach'); UPDATE pt SET v = 'changed' WHERE id = 150;
		INSERT INTO kl VALUES (2, 'keyed'); UPDATE kl SET v = 'changed' WHERE id = 1; UPDATE reborn SET a = 3 WHERE id = 2`)
	tables := []string{"pt", "lone", "kl", "kl_1", "reborn"}

	// From the first base backup: lone, kl and kl_1 joined after it. (The
	// joins start a base backup at once; the plan names the first base so
	// that one finishing before the mark changes nothing.)
	m := e.mark(t, "from the first base")
	e.waitStored(t, m)
	plan, err := MakePlanFrom(ctx, e.meta, e.id, Target{LSN: m.lsn}, first)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := Run(ctx, e.meta, e.arts, e.id, plan, Options{TargetDSN: target.DSN(target.CreateDB(t))})
	if err != nil {
		t.Fatal(err)
	}
	left := strings.Join(sum.LeftOut, "\n")
	for _, tbl := range []string{"public.lone: joined", "public.kl: joined", "public.kl_1: joined"} {
		if !strings.Contains(left, tbl) {
			t.Errorf("restore from the first base does not name %q as joined later:\n%s", tbl, left)
		}
	}
	if strings.Contains(left, "public.reborn") {
		recs, _ := e.meta.ListTableCoverage(ctx, e.id)
		t.Errorf("reborn, made again with a key, is left out:\n%s\ncoverage records: %+v", left, recs)
	}

	// From a base backup taken after: everything replayed, exact.
	if _, err := e.w.BackupNow(ctx); err != nil {
		t.Fatal(err)
	}
	src(`UPDATE pt SET v = 'after the new base' WHERE id = 151; DELETE FROM kl WHERE id = 2; INSERT INTO reborn VALUES (3, 3)`)
	m = e.mark(t, "from a newer base")
	want := map[string]string{}
	for _, tbl := range tables {
		want[tbl] = tableHash(t, source, e.db, tbl)
	}
	e.waitStored(t, m)
	db, sum, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	if len(sum.LeftOut) > 0 {
		t.Errorf("left out of a restore from a base taken after they joined:\n%s", strings.Join(sum.LeftOut, "\n"))
	}
	for _, tbl := range tables {
		if got := tableHash(t, target, db, tbl); got != want[tbl] {
			t.Errorf("%s restored as %s, source held %s", tbl, got, want[tbl])
		}
	}
}

// A table that joins the publication after the base backup (it got a key)
// and is dropped before the target: its rows written before it joined are
// in no artifact, so its changes in between are not replayed on the
// base's copy of it (replay stopped at "UPDATE affected 0 rows" on the
// corpus's merge.sql before). A table made again under its name afterwards
// is replayed, and every other table is exact.
func TestTableJoinedAfterTheBaseThenDroppedIsNotReplayed(t *testing.T) {
	e := capturingWith(t, nil, `CREATE TABLE j (id int NOT NULL, v text); INSERT INTO j VALUES (1, 'in the base')`)
	ctx := context.Background()
	first := firstBase(t, e)
	src := func(sql string) { t.Helper(); source.Exec(t, e.db, sql) }
	src(`INSERT INTO j SELECT g, 'not published yet' FROM generate_series(2, 50) g`)
	src(`ALTER TABLE j ADD PRIMARY KEY (id)`)
	src(`UPDATE j SET v = 'changed' WHERE id IN (1, 2); DELETE FROM j WHERE id = 3; INSERT INTO items(name, qty) VALUES ('while j', 2)`)
	src(`DROP TABLE j`)
	src(`CREATE TABLE j (id int PRIMARY KEY, w text); INSERT INTO j VALUES (10, 'new j'); UPDATE j SET w = 'new j, changed'`)
	src(`INSERT INTO items(name, qty) VALUES ('after', 3)`)
	m := e.mark(t, "after the drop")
	want := map[string]string{"items": tableHash(t, source, e.db, "items"), "j": tableHash(t, source, e.db, "j")}
	e.waitStored(t, m)
	plan, err := MakePlanFrom(ctx, e.meta, e.id, Target{LSN: m.lsn}, first)
	if err != nil {
		t.Fatal(err)
	}
	if gone := plan.JoinedThenDropped(); len(gone) != 1 || gone[0].Table != "public.j" {
		t.Errorf("joined then dropped: %+v, want public.j", gone)
	}
	db := target.CreateDB(t)
	if _, err := Run(ctx, e.meta, e.arts, e.id, plan, Options{TargetDSN: target.DSN(db)}); err != nil {
		t.Fatal(err)
	}
	for tbl, h := range want {
		if got := tableHash(t, target, db, tbl); got != h {
			t.Errorf("%s restored as %s, source held %s", tbl, got, h)
		}
	}
}

// firstBase is the key of the source's first base backup.
func firstBase(t *testing.T, e *env) string {
	t.Helper()
	bases, err := e.meta.ListBaseBackups(context.Background(), e.id)
	if err != nil || len(bases) == 0 {
		t.Fatalf("base backups: %v %v", bases, err)
	}
	return bases[0].ArtifactKey
}

package corpus

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/btfu/btfu/internal/pgtest"
)

// TestSnapshotComparesRowsByColumnName builds, in two databases, what the
// regression suite leaves and what pg_dump makes of it: an inheritance
// child whose parent gained a column after it was created comes back with
// the parent's columns first. The rows are equal by column name, not by
// position; the catalog facts the LEFT OUT reasons are checked against
// are read.
func TestSnapshotComparesRowsByColumnName(t *testing.T) {
	c, err := pgtest.Start(pgtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Stop() })
	c.Exec(t, "postgres", "CREATE DATABASE src")
	c.Exec(t, "postgres", "CREATE DATABASE dst")
	common := `
		CREATE TABLE nocols ();
		INSERT INTO nocols DEFAULT VALUES;
		CREATE TABLE "Odd ""name""" ("Mixed Case" int PRIMARY KEY, "select" text);
		INSERT INTO "Odd ""name""" VALUES (1, 'x,y'), (2, NULL);
		CREATE UNLOGGED TABLE ul (a int);
		CREATE TABLE nothing (a int PRIMARY KEY);
		ALTER TABLE nothing REPLICA IDENTITY NOTHING;
		CREATE TABLE full_id (a int);
		ALTER TABLE full_id REPLICA IDENTITY FULL;
		CREATE TABLE keyless (a int);
		CREATE TABLE root (a int, b text) PARTITION BY LIST (a);
		CREATE TABLE mid PARTITION OF root FOR VALUES IN (1, 2) PARTITION BY LIST (a);
		CREATE TABLE leaf PARTITION OF mid FOR VALUES IN (1);
		INSERT INTO root VALUES (1, 'one');`
	// The source: the child first, then the parent's new column.
	c.Exec(t, "src", common+`
		CREATE TABLE a_star (class char, a int);
		CREATE TABLE b_star (b text) INHERITS (a_star);
		ALTER TABLE a_star ADD COLUMN z int;
		INSERT INTO b_star VALUES ('b', 1, 'two', 3), ('b', 4, NULL, NULL);`)
	// pg_dump's order: the parent's columns, then the child's own.
	c.Exec(t, "dst", common+`
		CREATE TABLE a_star (class char, a int, z int);
		CREATE TABLE b_star (b text) INHERITS (a_star);
		INSERT INTO b_star (class, a, b, z) VALUES ('b', 1, 'two', 3), ('b', 4, NULL, NULL);`)
	ctx := context.Background()
	src, err := TakeSnapshot(ctx, c.DSN("src"))
	if err != nil {
		t.Fatal(err)
	}
	dst, err := TakeSnapshot(ctx, c.DSN("dst"))
	if err != nil {
		t.Fatal(err)
	}
	b := src.Tables["public.b_star"]
	if want := []string{"class character(1)", "a integer", "b text", "z integer"}; !reflect.DeepEqual(b.Columns, want) || b.Rows != 2 ||
		!reflect.DeepEqual(b.Parents, []string{"public.a_star"}) {
		t.Fatalf("source b_star: %+v", b)
	}
	if want := []string{"class character(1)", "a integer", "z integer", "b text"}; !reflect.DeepEqual(dst.Tables["public.b_star"].Columns, want) {
		t.Fatalf("restored b_star columns: %v", dst.Tables["public.b_star"].Columns)
	}
	facts := func(name string) string {
		ts := src.Tables[name]
		return strings.Join([]string{ts.Kind, ts.Persistence, ts.ReplIdent, map[bool]string{true: "identity", false: "none"}[ts.HasIdentity], strings.Join(ts.Ancestors, ">")}, " ")
	}
	for name, want := range map[string]string{
		`public.Odd "name"`: "r p d identity ", "public.ul": "r u d none ", "public.nothing": "r p n none ", "public.full_id": "r p f identity ",
		"public.keyless": "r p d none ", "public.root": "p p d none ", "public.mid": "p p d none public.root", "public.leaf": "r p d none public.mid>public.root",
	} {
		if got := facts(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if n := src.Tables["public.nocols"]; n.Rows != 1 || n.Err != "" || n.Hash == "" {
		t.Errorf("a table without columns: %+v", n)
	}
	cmp := Compare(src, dst, RestoreOutput{}, Mode{})
	for _, v := range cmp.Tables {
		want := Equal
		if v.Table == "public.b_star" {
			want = ColumnOrder
		}
		if v.Class != want {
			t.Errorf("%s: %s %s, want %s", v.Table, v.Class, v.Detail, want)
		}
	}
	if !cmp.OK() {
		t.Fatalf("failures: %q", cmp.Failures())
	}

	// One value changed in the child: its rows differ now.
	c.Exec(t, "dst", `UPDATE b_star SET z = 5 WHERE a = 1`)
	if dst, err = TakeSnapshot(ctx, c.DSN("dst")); err != nil {
		t.Fatal(err)
	}
	cmp = Compare(src, dst, RestoreOutput{}, Mode{})
	if f := cmp.Failures(); len(f) != 1 || !strings.Contains(f[0], "table public.b_star: columns in another order") || !strings.Contains(f[0], "2 rows both, contents differ") {
		t.Fatalf("failures: %q", f)
	}
}

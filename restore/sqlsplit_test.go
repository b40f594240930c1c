package restore

import (
	"strings"
	"testing"
)

func TestDDLStatements(t *testing.T) {
	cases := []struct{ in, want string }{
		{"ALTER TABLE items ADD COLUMN note text; INSERT INTO items VALUES (1)", "ALTER TABLE items ADD COLUMN note text"},
		{"insert into t values ('a;b'); create table x(a text default ';')", "create table x(a text default ';')"},
		{"CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql; UPDATE t SET a = 1", "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql"},
		{"-- comment; with semicolon\nDROP TABLE \"we;ird\"", "-- comment; with semicolon\nDROP TABLE \"we;ird\""},
		{"/* x; */ ALTER TABLE a RENAME TO b;", "/* x; */ ALTER TABLE a RENAME TO b"},
		{"CREATE TABLE t(a int)", "CREATE TABLE t(a int)"},
	}
	for _, c := range cases {
		if got := strings.Join(ddlStatements(c.in), " || "); got != c.want {
			t.Errorf("%q:\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

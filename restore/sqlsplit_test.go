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

func TestCreateAsAndEnumValueAreToldApart(t *testing.T) {
	for s, want := range map[string]bool{
		"CREATE TABLE a AS SELECT 1":                                     true,
		"create unlogged table if not exists a (x, y) as values (1, 2)":  true,
		"CREATE TEMP TABLE a WITH (fillfactor = 70) AS TABLE b":          true,
		"CREATE TABLE a AS EXECUTE p(1)":                                 true,
		"-- note\nCREATE TABLE a AS (SELECT 1)":                          true,
		"CREATE TABLE a (g int GENERATED ALWAYS AS (1) STORED)":          false,
		"CREATE TABLE a (id int GENERATED ALWAYS AS IDENTITY)":           false,
		`CREATE TABLE "as" (x int DEFAULT 'as')`:                         false,
		"CREATE TABLE p PARTITION OF q FOR VALUES FROM (1) TO (2)":       false,
		"CREATE MATERIALIZED VIEW mv AS SELECT 1":                        false,
		"CREATE VIEW v AS SELECT 1":                                      false,
		"CREATE FUNCTION f() RETURNS int AS $$ SELECT 1 $$ LANGUAGE sql": false,
	} {
		if got := isCreateAs(s); got != want {
			t.Errorf("isCreateAs(%q) = %v, want %v", s, got, want)
		}
	}
	for s, want := range map[string]bool{
		"ALTER TYPE mood ADD VALUE 'happy'":                      true,
		"alter type mood add value if not exists 'x' before 'y'": true,
		"ALTER TYPE pair ADD ATTRIBUTE value int":                false,
		"ALTER TYPE mood RENAME VALUE 'a' TO 'b'":                false,
		"ALTER TABLE t ADD VALUE int":                            false,
	} {
		if got := enumValueAdded(s); got != want {
			t.Errorf("enumValueAdded(%q) = %v, want %v", s, got, want)
		}
	}
}

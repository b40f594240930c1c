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

func TestStatementRewritesForAnotherCluster(t *testing.T) {
	for s, want := range map[string]bool{
		"ALTER TABLE t OWNER TO bob":                   true,
		`alter function f(int) owner to "Bob Jr"`:      true,
		"ALTER SCHEMA s OWNER TO CURRENT_USER;":        true,
		"ALTER TABLE t OWNER TO bob, ADD COLUMN c int": false,
		"ALTER TABLE t ADD COLUMN owner int":           false,
		"CREATE TABLE owner (a int)":                   false,
	} {
		if got := isOwnerChange(s); got != want {
			t.Errorf("isOwnerChange(%q) = %v, want %v", s, got, want)
		}
	}
	for _, c := range []struct{ in, name, want string }{
		{"CREATE SCHEMA s AUTHORIZATION bob", "s", "CREATE SCHEMA s "},
		{"create schema if not exists s authorization bob create table t (a int)", "s", "create schema if not exists s  create table t (a int)"},
		{"CREATE SCHEMA AUTHORIZATION bob", "bob", "CREATE SCHEMA bob"},
		{`CREATE SCHEMA AUTHORIZATION CURRENT_ROLE CREATE TABLE t (a int)`, `"Me"`, `CREATE SCHEMA "Me" CREATE TABLE t (a int)`},
		{"CREATE SCHEMA s", "s", "CREATE SCHEMA s"},
	} {
		if got := withoutSchemaAuthorization(c.in, c.name); got != c.want {
			t.Errorf("withoutSchemaAuthorization(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	for _, c := range []struct {
		in, want string
		ok       bool
	}{
		{"CREATE TABLE t (a int) TABLESPACE ts", "CREATE TABLE t (a int) ", true},
		{"CREATE INDEX i ON t (a) TABLESPACE \"T s\" WHERE a > 0", "CREATE INDEX i ON t (a)  WHERE a > 0", true},
		{"ALTER TABLE t ADD PRIMARY KEY (a) USING INDEX TABLESPACE ts", "ALTER TABLE t ADD PRIMARY KEY (a) ", true},
		{"ALTER TABLE t SET TABLESPACE ts", "", false},
		{"CREATE TABLE t (a text DEFAULT 'TABLESPACE x')", "", false},
	} {
		got, ok := withoutTablespace(c.in)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("withoutTablespace(%q) = %q, %v; want %q, %v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func TestSplitStatementsLikePsql(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"create rule r as on insert to v do instead (insert into a values (1); delete from b); select 1",
			[]string{"create rule r as on insert to v do instead (insert into a values (1); delete from b)", "select 1"}},
		{"CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN a > 0 THEN 1 ELSE 2 END; SELECT 3; END; DROP TABLE x",
			[]string{"CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN a > 0 THEN 1 ELSE 2 END; SELECT 3; END", "DROP TABLE x"}},
		{"create or replace procedure p() begin atomic insert into t values (1); end; begin; commit",
			[]string{"create or replace procedure p() begin atomic insert into t values (1); end", "begin", "commit"}},
		{"SELECT E'it\\'s; fine'; SELECT 2 /* a; /* nested; */ b */", []string{"SELECT E'it\\'s; fine'", "SELECT 2 /* a; /* nested; */ b */"}},
		{"DO $body$ BEGIN PERFORM 1; END $body$; SELECT $1", []string{"DO $body$ BEGIN PERFORM 1; END $body$", "SELECT $1"}},
	} {
		if got := splitStatements(c.in); strings.Join(got, " || ") != strings.Join(c.want, " || ") {
			t.Errorf("splitStatements(%q):\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestClusterStatementsAreToldApart(t *testing.T) {
	for s, want := range map[string]bool{
		"CREATE ROLE r":                     true,
		"DROP USER IF EXISTS u":             true,
		"ALTER DATABASE d SET x = 1":        true,
		"ALTER SYSTEM SET work_mem = '1MB'": true,
		"CREATE EVENT TRIGGER e ON ddl_command_end EXECUTE FUNCTION f()": true,
		"GRANT r1 TO r2":                            true,
		"GRANT CONNECT ON DATABASE d TO r":          true,
		"COMMENT ON ROLE r IS 'x'":                  true,
		"CREATE TABLE t (a int) TABLESPACE ts":      false,
		"CREATE USER MAPPING FOR r SERVER s":        false,
		"GRANT SELECT ON t TO r":                    false,
		"COMMENT ON TABLE role IS 'x'":              false,
		"ALTER TABLE t SET TABLESPACE ts":           false,
		"SECURITY LABEL FOR p ON TABLE t IS 'x'":    false,
		"CREATE INDEX i ON t (a) TABLESPACE system": false,
	} {
		if got := clusterStatement(topLevelWords(s)); got != want {
			t.Errorf("clusterStatement(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestRoleSpecsAreNamed(t *testing.T) {
	for s, want := range map[string]string{
		"CREATE SCHEMA AUTHORIZATION CURRENT_ROLE CREATE TABLE r.tab (id int)":   `CREATE SCHEMA AUTHORIZATION "r" CREATE TABLE r.tab (id int)`,
		"CREATE USER MAPPING FOR current_user SERVER s8":                         `CREATE USER MAPPING FOR "r" SERVER s8`,
		"CREATE USER MAPPING IF NOT EXISTS FOR USER SERVER s":                    `CREATE USER MAPPING IF NOT EXISTS FOR "r" SERVER s`,
		"ALTER USER MAPPING FOR session_user SERVER s OPTIONS (a '1')":           `ALTER USER MAPPING FOR "r" SERVER s OPTIONS (a '1')`,
		"ALTER TABLE t OWNER TO CURRENT_USER":                                    `ALTER TABLE t OWNER TO "r"`,
		"GRANT SELECT ON t TO other, current_user WITH GRANT OPTION":             `GRANT SELECT ON t TO other, "r" WITH GRANT OPTION`,
		"REVOKE SELECT ON t FROM CURRENT_ROLE GRANTED BY current_user":           `REVOKE SELECT ON t FROM "r" GRANTED BY "r"`,
		"CREATE TABLE t (who text DEFAULT current_user, at text DEFAULT user)":   "CREATE TABLE t (who text DEFAULT current_user, at text DEFAULT user)",
		"CREATE FUNCTION f() RETURNS text AS 'SELECT current_user' LANGUAGE sql": "CREATE FUNCTION f() RETURNS text AS 'SELECT current_user' LANGUAGE sql",
		"CREATE POLICY p ON t USING (owner = current_user)":                      "CREATE POLICY p ON t USING (owner = current_user)",
		"CREATE POLICY p ON t TO current_user USING (true)":                      `CREATE POLICY p ON t TO "r" USING (true)`,
	} {
		if got := withRoleNamed(s, "r"); got != want {
			t.Errorf("withRoleNamed(%q) = %q, want %q", s, got, want)
		}
	}
}

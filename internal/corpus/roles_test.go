package corpus

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSuiteRolesReadsCreateRoleUserGroup(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sql"), 0o755); err != nil {
		t.Fatal(err)
	}
	sql := `CREATE ROLE regress_a;
create user Regress_B login superuser;
CREATE ROLE regress_c NOSUPERUSER CREATEDB IN ROLE regress_a;
ALTER ROLE regress_a BYPASSRLS;
ALTER USER MAPPING FOR regress_a SERVER s OPTIONS (superuser 'x');
CREATE GROUP "Quoted ""G""";
-- DROP ROLE regress_a; CREATE TABLE create_role_log (a int);
CREATE ROLE regress_a;`
	if err := os.WriteFile(filepath.Join(dir, "sql", "x.sql"), []byte(sql), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := SuiteRoles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range got {
		names = append(names, r.Name+"("+strings.Join(r.Attrs, " ")+")")
	}
	if strings.Join(names, "|") != `Quoted "G"()|regress_a(BYPASSRLS)|regress_b(SUPERUSER)|regress_c(CREATEDB)` {
		t.Errorf("roles %q", names)
	}
}

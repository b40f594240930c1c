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
create user Regress_B login;
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
	if strings.Join(got, "|") != `Quoted "G"|regress_a|regress_b` {
		t.Errorf("roles %q", got)
	}
}

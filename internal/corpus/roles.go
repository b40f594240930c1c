package corpus

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

var (
	createRoleRE = regexp.MustCompile(`(?i)\b(create|alter)\s+(?:role|user|group)\s+("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)([^;]*)`)
	roleAttrRE   = regexp.MustCompile(`(?i)\b(superuser|createdb|createrole|replication|bypassrls)\b`)
)

// Role is a role the suite creates, with the attributes it gives it
// (SUPERUSER, CREATEDB, CREATEROLE, REPLICATION, BYPASSRLS; in any of its
// CREATE or ALTER ROLE statements), as pg_dumpall --roles-only would
// carry them.
type Role struct {
	Name  string
	Attrs []string
}

// SuiteRoles returns the roles the suite's files create (by name, as
// CREATE ROLE/USER/GROUP gives them), sorted by name.
func SuiteRoles(dir string) ([]Role, error) {
	files, err := filepath.Glob(filepath.Join(dir, "sql", "*.sql"))
	if err != nil {
		return nil, err
	}
	seen := map[string]map[string]bool{}
	var altered [][]string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, m := range createRoleRE.FindAllStringSubmatch(string(b), -1) {
			name := m[2]
			if strings.HasPrefix(name, `"`) {
				name = strings.ReplaceAll(name[1:len(name)-1], `""`, `"`)
			} else {
				name = strings.ToLower(name)
			}
			if strings.EqualFold(m[1], "alter") {
				// ALTER ROLE r SUPERUSER gives it later (not ALTER USER
				// MAPPING).
				altered = append(altered, []string{name, m[3]})
				continue
			}
			if seen[name] == nil {
				seen[name] = map[string]bool{}
			}
			for _, a := range roleAttrRE.FindAllString(m[3], -1) {
				seen[name][strings.ToUpper(a)] = true
			}
		}
	}
	for _, a := range altered {
		if attrs := seen[a[0]]; attrs != nil {
			for _, x := range roleAttrRE.FindAllString(a[1], -1) {
				attrs[strings.ToUpper(x)] = true
			}
		}
	}
	out := make([]Role, 0, len(seen))
	for n, attrs := range seen {
		r := Role{Name: n}
		for a := range attrs {
			r.Attrs = append(r.Attrs, a)
		}
		sort.Strings(r.Attrs)
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// CreateRoles creates the roles, with their attributes, that do not
// exist on the cluster of dsn:
// what a user does on a restore target first (pg_dumpall --roles-only),
// since roles belong to the cluster and a restore of one database does
// not bring them. The suite drops most of the roles it creates, so its
// own cluster lacks them at the end.
func CreateRoles(ctx context.Context, dsn string, roles []Role) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, r := range roles {
		sql := fmt.Sprintf("DO $$ BEGIN CREATE ROLE %s %s; EXCEPTION WHEN duplicate_object THEN NULL; END $$", pgx.Identifier{r.Name}.Sanitize(), strings.Join(r.Attrs, " "))
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("create role %s: %w", r.Name, err)
		}
	}
	return nil
}

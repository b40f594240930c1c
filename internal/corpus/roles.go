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

var createRoleRE = regexp.MustCompile(`(?i)\bcreate\s+(?:role|user|group)\s+("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)`)

// SuiteRoles returns the roles the suite's files create (by name, as
// CREATE ROLE/USER/GROUP gives them), sorted.
func SuiteRoles(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "sql", "*.sql"))
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		for _, m := range createRoleRE.FindAllStringSubmatch(string(b), -1) {
			name := m[1]
			if strings.HasPrefix(name, `"`) {
				name = strings.ReplaceAll(name[1:len(name)-1], `""`, `"`)
			} else {
				name = strings.ToLower(name)
			}
			seen[name] = true
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}

// CreateRoles creates the roles that do not exist on the cluster of dsn:
// what a user does on a restore target first (pg_dumpall --roles-only),
// since roles belong to the cluster and a restore of one database does
// not bring them. The suite drops most of the roles it creates, so its
// own cluster lacks them at the end.
func CreateRoles(ctx context.Context, dsn string, roles []string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	for _, r := range roles {
		sql := fmt.Sprintf("DO $$ BEGIN CREATE ROLE %s; EXCEPTION WHEN duplicate_object THEN NULL; END $$", pgx.Identifier{r}.Sanitize())
		if _, err := conn.Exec(ctx, sql); err != nil {
			return fmt.Errorf("create role %s: %w", r, err)
		}
	}
	return nil
}

package restore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/pgbin"
	"github.com/btfu/btfu/store/artifact"
)

// ErrMissingRoles: the base backup's objects belong to roles the target
// lacks, or that the restoring role cannot act as.
var ErrMissingRoles = errors.New("the target lacks the roles that own the backup's objects")

// archiveOwners lists the roles that own the base backup's objects, from
// its table of contents (pg_restore --list: the owner is a line's last
// field, empty for entries without one).
func archiveOwners(ctx context.Context, arts artifact.Store, key string, prog pgbin.Program) ([]string, error) {
	rc, err := arts.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	cmd := exec.CommandContext(ctx, prog.Path, "--list")
	cmd.Stdin = rc
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("pg_restore --list: %v: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return nil, fmt.Errorf("pg_restore --list: %w", err)
	}
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 1<<20), 1<<26)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, ";") {
			continue
		}
		if i := strings.LastIndexByte(line, ' '); i >= 0 && i < len(line)-1 {
			seen[line[i+1:]] = true
		}
	}
	owners := make([]string, 0, len(seen))
	for o := range seen {
		owners = append(owners, o)
	}
	sort.Strings(owners)
	return owners, sc.Err()
}

// checkOwners refuses, before anything is written, a target that lacks a
// role owning the backup's objects, or whose restoring role cannot act as
// it: pg_restore would stop at the first such object and leave the target
// partial.
func checkOwners(ctx context.Context, conn *pgx.Conn, owners []string) error {
	rows, err := conn.Query(ctx, `SELECT o, EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = o),
		EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = o) AND pg_catalog.pg_has_role(current_user, o, 'MEMBER')
		FROM unnest($1::text[]) o ORDER BY o`, owners)
	if err != nil {
		return fmt.Errorf("target: look up the owners' roles: %w", err)
	}
	var missing, foreign []string
	for rows.Next() {
		var o string
		var exists, member bool
		if err := rows.Scan(&o, &exists, &member); err != nil {
			rows.Close()
			return err
		}
		switch {
		case !exists:
			missing = append(missing, o)
		case !member:
			foreign = append(foreign, o)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	var why []string
	if len(missing) > 0 {
		why = append(why, "missing there: "+strings.Join(missing, ", ")+" (create them first, e.g. from pg_dumpall --roles-only on the source's cluster)")
	}
	if len(foreign) > 0 {
		why = append(why, "the restoring role may not act as: "+strings.Join(foreign, ", ")+" (GRANT them to it, or restore as a superuser)")
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s; or restore with --no-owner, and the restored objects belong to the restoring role; nothing was written to the target", ErrMissingRoles, strings.Join(why, "; "))
}

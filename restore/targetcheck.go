package restore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/store"
)

// TargetInfo describes a database a restore would write into.
type TargetInfo struct {
	SystemIdentifier string
	Database         string
	Major            int
	ServerVersion    string
	Tables           int
}

func inspectTarget(ctx context.Context, conn *pgx.Conn) (TargetInfo, error) {
	var ti TargetInfo
	err := conn.QueryRow(ctx, `SELECT (SELECT system_identifier::text FROM pg_control_system()), current_database(),
		current_setting('server_version_num')::int / 10000, current_setting('server_version'),
		(SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p') AND n.nspname NOT IN ('pg_catalog','information_schema') AND n.nspname NOT LIKE 'pg_toast%')`).
		Scan(&ti.SystemIdentifier, &ti.Database, &ti.Major, &ti.ServerVersion, &ti.Tables)
	if err != nil {
		return ti, fmt.Errorf("inspect the target: %w", err)
	}
	return ti, nil
}

// refuse says why a restore must not write into the target, or nil.
func (ti TargetInfo) refuse(src store.Source, clean bool) error {
	if ti.SystemIdentifier == src.SystemIdentifier && ti.Database == src.Database {
		return fmt.Errorf("the target is the source itself (system %s, database %s): btfu never restores into the source; create an empty database elsewhere", ti.SystemIdentifier, ti.Database)
	}
	if ti.Tables > 0 && !clean {
		return fmt.Errorf("the target database %s is not empty (%d tables); restore into an empty database, or pass --clean to drop what the backup contains first", ti.Database, ti.Tables)
	}
	return nil
}

// CheckTarget connects to dsn and says whether a restore of src may write
// there: reachable, not the source, empty. It changes nothing.
func CheckTarget(ctx context.Context, dsn string, src store.Source) (TargetInfo, error) {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return TargetInfo{}, fmt.Errorf("connect to the target: %s", redact.String(err.Error()))
	}
	defer conn.Close(context.WithoutCancel(ctx))
	ti, err := inspectTarget(ctx, conn)
	if err != nil {
		return ti, err
	}
	return ti, ti.refuse(src, false)
}

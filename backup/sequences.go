package backup

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/sourcedb"
	"github.com/btfu/btfu/store"
)

// sequencesSQL yields every user sequence's last_value and is_called as a
// JSON array of store.SequenceValue. It reads each sequence's own row
// (through query_to_xml, so one statement reads them all): pg_sequences
// hides last_value when is_called is false, as after ALTER SEQUENCE
// RESTART WITH.
const sequencesSQL = `SELECT COALESCE(json_agg(json_build_object(
		'Schema', n.nspname, 'Name', c.relname,
		'LastValue', (xpath('/row/last_value/text()', x))[1]::text::bigint,
		'IsCalled', (xpath('/row/is_called/text()', x))[1]::text::boolean)
		ORDER BY n.nspname, c.relname), '[]')
	FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace,
	LATERAL query_to_xml(format('SELECT last_value, is_called FROM %I.%I', n.nspname, c.relname), false, true, '') AS x
	WHERE c.relkind = 'S' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(temp|toast)'`

// readSequences reads every sequence with sequencesSQL.
func readSequences(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) ([]store.SequenceValue, error) {
	var vals []store.SequenceValue
	if err := q.QueryRow(ctx, sequencesSQL).Scan(&vals); err != nil {
		return nil, sequencesError(err)
	}
	return vals, nil
}

func sequencesError(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		return fmt.Errorf("read sequences: %w; grant SELECT on every sequence to btfu's role (GRANT SELECT ON ALL SEQUENCES IN SCHEMA ...)", err)
	}
	return fmt.Errorf("read sequences: %w", err)
}

// SnapshotSequences records every sequence's value now (DESIGN 4.6), the
// cheap periodic kind: one query on a normal connection reads the WAL
// position and time, then the values, so the values are at or after the
// recorded position.
func SnapshotSequences(ctx context.Context, src *config.Source, sourceID int64, meta store.Store) (store.SequenceSnapshot, error) {
	snap, err := snapshotSequences(ctx, src, sourceID)
	if err == nil {
		snap, err = meta.AddSequenceSnapshot(ctx, snap)
	}
	if err != nil {
		return store.SequenceSnapshot{}, fmt.Errorf("snapshot sequences of source %s: %w", src.Name, err)
	}
	return snap, nil
}

func snapshotSequences(ctx context.Context, src *config.Source, sourceID int64) (store.SequenceSnapshot, error) {
	snap := store.SequenceSnapshot{SourceID: sourceID}
	conn, err := sourcedb.Connect(ctx, src)
	if err != nil {
		return snap, err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var lsn string
	// The target list is evaluated left to right: position first.
	err = conn.QueryRow(ctx, `SELECT pg_current_wal_lsn()::text, now(), (`+sequencesSQL+`)`).Scan(&lsn, &snap.TakenAt, &snap.Values)
	if err != nil {
		return snap, sequencesError(err)
	}
	snap.LSN, err = pglogrepl.ParseLSN(lsn)
	return snap, err
}

package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/btfu/btfu/store"
)

// migrations[i] takes the schema from version i to i+1; its length is
// store.SchemaVersion. Statements are shared by every dialect: @ marks a
// table name and {{id}} stands for Dialect.AutoID. Never edit a released
// migration; append a new one (and give Dialect a field should a step ever
// need engine-specific SQL).
var migrations = [][]string{
	// 1: the initial schema.
	{
		`CREATE TABLE @sources (
			id {{id}},
			name TEXT NOT NULL UNIQUE,
			system_identifier TEXT NOT NULL,
			db_name TEXT NOT NULL,
			slot_name TEXT NOT NULL,
			publication_name TEXT NOT NULL,
			state TEXT NOT NULL,
			last_error TEXT NOT NULL,
			created_at BIGINT NOT NULL,
			updated_at BIGINT NOT NULL
		)`,
		// tail_lsn is the EndLSN of the newest segment ever added (StartLSN
		// before the first): what the next segment's PrevEndLSN must be.
		// It survives the deletion of segment records.
		`CREATE TABLE @chains (
			id {{id}},
			source_id BIGINT NOT NULL REFERENCES @sources (id),
			slot_name TEXT NOT NULL,
			start_lsn BIGINT NOT NULL,
			started_at BIGINT,
			cursor_lsn BIGINT NOT NULL,
			cursor_time BIGINT,
			ended_at BIGINT,
			end_reason TEXT NOT NULL,
			tail_lsn BIGINT NOT NULL
		)`,
		`CREATE INDEX chains_source_idx ON @chains (source_id)`,
		`CREATE TABLE @base_backups (
			id {{id}},
			source_id BIGINT NOT NULL REFERENCES @sources (id),
			chain_id BIGINT REFERENCES @chains (id),
			consistent_lsn BIGINT NOT NULL,
			snapshot_name TEXT NOT NULL,
			snapshot_time BIGINT,
			started_at BIGINT,
			finished_at BIGINT,
			artifact_key TEXT NOT NULL,
			size_bytes BIGINT NOT NULL,
			sha256 TEXT NOT NULL,
			pg_dump_version TEXT NOT NULL,
			server_version TEXT NOT NULL,
			status TEXT NOT NULL,
			error TEXT NOT NULL
		)`,
		`CREATE INDEX base_backups_source_idx ON @base_backups (source_id)`,
		`CREATE UNIQUE INDEX base_backups_artifact_key_idx ON @base_backups (artifact_key) WHERE artifact_key <> ''`,
		`CREATE TABLE @segments (
			id {{id}},
			source_id BIGINT NOT NULL REFERENCES @sources (id),
			chain_id BIGINT NOT NULL REFERENCES @chains (id),
			format_version INTEGER NOT NULL,
			artifact_key TEXT NOT NULL,
			first_commit_lsn BIGINT NOT NULL,
			last_commit_lsn BIGINT NOT NULL,
			end_lsn BIGINT NOT NULL,
			prev_end_lsn BIGINT NOT NULL,
			first_commit_at BIGINT,
			last_commit_at BIGINT,
			tx_count BIGINT NOT NULL,
			change_count BIGINT NOT NULL,
			raw_bytes BIGINT NOT NULL,
			stored_bytes BIGINT NOT NULL,
			sha256 TEXT NOT NULL,
			created_at BIGINT
		)`,
		`CREATE INDEX segments_source_chain_lsn_idx ON @segments (source_id, chain_id, first_commit_lsn)`,
		`CREATE INDEX segments_chain_idx ON @segments (chain_id)`,
		`CREATE UNIQUE INDEX segments_artifact_key_idx ON @segments (artifact_key) WHERE artifact_key <> ''`,
		`CREATE TABLE @schema_snapshots (
			id {{id}},
			source_id BIGINT NOT NULL REFERENCES @sources (id),
			lsn BIGINT NOT NULL,
			taken_at BIGINT,
			artifact_key TEXT NOT NULL,
			size_bytes BIGINT NOT NULL,
			sha256 TEXT NOT NULL
		)`,
		`CREATE INDEX schema_snapshots_source_idx ON @schema_snapshots (source_id, taken_at)`,
		`CREATE UNIQUE INDEX schema_snapshots_artifact_key_idx ON @schema_snapshots (artifact_key) WHERE artifact_key <> ''`,
		`CREATE TABLE @sequence_snapshots (
			id {{id}},
			source_id BIGINT NOT NULL REFERENCES @sources (id),
			lsn BIGINT NOT NULL,
			taken_at BIGINT
		)`,
		`CREATE INDEX sequence_snapshots_source_idx ON @sequence_snapshots (source_id, taken_at)`,
		`CREATE TABLE @sequence_values (
			snapshot_id BIGINT NOT NULL REFERENCES @sequence_snapshots (id) ON DELETE CASCADE,
			schema_name TEXT NOT NULL,
			seq_name TEXT NOT NULL,
			last_value BIGINT NOT NULL,
			is_called BOOLEAN NOT NULL,
			PRIMARY KEY (snapshot_id, schema_name, seq_name)
		)`,
		`CREATE TABLE @jobs (
			id {{id}},
			source_id BIGINT REFERENCES @sources (id),
			kind TEXT NOT NULL,
			status TEXT NOT NULL,
			started_at BIGINT,
			finished_at BIGINT,
			detail TEXT NOT NULL,
			error TEXT NOT NULL
		)`,
		`CREATE INDEX jobs_source_idx ON @jobs (source_id, id)`,
		`CREATE TABLE @events (
			id {{id}},
			source_id BIGINT REFERENCES @sources (id),
			at BIGINT,
			level TEXT NOT NULL,
			kind TEXT NOT NULL,
			message TEXT NOT NULL,
			attrs TEXT
		)`,
		`CREATE INDEX events_source_idx ON @events (source_id, id)`,
	},
	// 2: a pause asked for at run time survives restarts.
	{
		`ALTER TABLE @sources ADD COLUMN paused BOOLEAN NOT NULL DEFAULT FALSE`,
	},
	// 3: tables added to an explicit-list publication after registration.
	{
		`CREATE TABLE @table_coverage (
			id {{id}},
			source_id BIGINT NOT NULL REFERENCES @sources (id),
			table_name TEXT NOT NULL,
			from_lsn BIGINT NOT NULL,
			added_at BIGINT NOT NULL
		)`,
		`CREATE INDEX table_coverage_source_idx ON @table_coverage (source_id, id)`,
	},
	// 4: tables left out of the publication (no usable replica identity),
	// from an LSN on, and why.
	{
		`ALTER TABLE @table_coverage ADD COLUMN left_out BOOLEAN NOT NULL DEFAULT FALSE`,
		`ALTER TABLE @table_coverage ADD COLUMN reason TEXT NOT NULL DEFAULT ''`,
	},
	// 5: restore drills, with their phases and table verdicts as JSON.
	{
		`CREATE TABLE @drills (
			id {{id}},
			source_id BIGINT NOT NULL REFERENCES @sources (id),
			started_at BIGINT,
			finished_at BIGINT,
			status TEXT NOT NULL,
			trigger_kind TEXT NOT NULL,
			lsn BIGINT NOT NULL,
			base_key TEXT NOT NULL,
			category TEXT NOT NULL,
			error TEXT NOT NULL,
			hint TEXT NOT NULL,
			phases TEXT NOT NULL,
			tables TEXT NOT NULL,
			source_bytes BIGINT NOT NULL,
			restored_bytes BIGINT NOT NULL,
			artifact_bytes BIGINT NOT NULL
		)`,
		`CREATE INDEX drills_source_idx ON @drills (source_id, id)`,
	},
}

// versionTable records one row per applied migration.
const versionTable = "schema_version"

// tooNewError reports a store migrated by a newer btfu.
type tooNewError struct{ msg string }

func (e *tooNewError) Error() string { return e.msg }
func (e *tooNewError) Unwrap() error { return store.ErrSchemaTooNew }

// migrate applies pending migrations, each in its own transaction.
func (s *Store) migrate(ctx context.Context) error {
	if len(migrations) != store.SchemaVersion {
		return fmt.Errorf("sqlstore: %d migrations for schema version %d", len(migrations), store.SchemaVersion)
	}
	for {
		done, err := s.migrateStep(ctx)
		if err != nil {
			if errors.As(err, new(*tooNewError)) {
				return err // already names the store
			}
			return fmt.Errorf("metadata store %s: %w", s.d.Where, err)
		}
		if done {
			return nil
		}
	}
}

// migrateStep applies the next pending migration, or reports that none is.
func (s *Store) migrateStep(ctx context.Context) (done bool, err error) {
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		if s.d.Prepare != nil {
			if err := s.d.Prepare(ctx, tx); err != nil {
				return err
			}
		}
		exists, err := s.d.TableExists(ctx, tx, versionTable)
		if err != nil {
			return fmt.Errorf("look for %s: %w", versionTable, err)
		}
		if !exists {
			if _, err := s.exec(ctx, tx, `CREATE TABLE @`+versionTable+` (version INTEGER PRIMARY KEY, applied_at BIGINT NOT NULL)`); err != nil {
				return fmt.Errorf("create %s: %w", versionTable, err)
			}
		}
		v, err := s.version(ctx, tx)
		if err != nil {
			return err
		}
		switch {
		case v > store.SchemaVersion:
			return &tooNewError{fmt.Sprintf("metadata store %s has schema version %d but this btfu knows only up to %d; upgrade btfu (or point metadata at another store)",
				s.d.Where, v, store.SchemaVersion)}
		case v == store.SchemaVersion:
			done = true
			return nil
		}
		for _, stmt := range migrations[v] {
			if _, err := s.exec(ctx, tx, strings.ReplaceAll(stmt, "{{id}}", s.d.AutoID)); err != nil {
				return fmt.Errorf("migrate to schema version %d: %w", v+1, err)
			}
		}
		if _, err := s.exec(ctx, tx, `INSERT INTO @`+versionTable+` (version, applied_at) VALUES (?, ?)`, v+1, time.Now().UnixMicro()); err != nil {
			return fmt.Errorf("record schema version %d: %w", v+1, err)
		}
		return nil
	})
	return done, err
}

func (s *Store) version(ctx context.Context, q querier) (int, error) {
	var v int
	if err := s.queryRow(ctx, q, `SELECT COALESCE(MAX(version), 0) FROM @`+versionTable).Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

// SchemaVersion reports the applied migration version.
func (s *Store) SchemaVersion(ctx context.Context) (int, error) {
	return s.version(ctx, s.db)
}

package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/store"
)

// Sources.

const sourceCols = `id, name, system_identifier, db_name, slot_name, publication_name, state, last_error, created_at, updated_at, paused`

func scanSource(r scanner) (s store.Source, err error) {
	err = r.Scan(&s.ID, &s.Name, &s.SystemIdentifier, &s.Database, &s.SlotName, &s.PublicationName,
		&s.State, &s.LastError, timeCol{&s.CreatedAt}, timeCol{&s.UpdatedAt}, &s.Paused)
	return s, err
}

// UpsertSource creates the source by name, or updates its slot,
// publication, system identifier and database. ID, CreatedAt, State and
// LastError of an existing source are kept (SetSourceState changes those).
func (s *Store) UpsertSource(ctx context.Context, src store.Source) (store.Source, error) {
	if src.Name == "" {
		return store.Source{}, errors.New("upsert source: empty name")
	}
	now := tv(time.Now())
	out, err := scanSource(s.queryRow(ctx, s.db, `INSERT INTO @sources
		(name, system_identifier, db_name, slot_name, publication_name, state, last_error, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (name) DO UPDATE SET system_identifier = excluded.system_identifier,
			db_name = excluded.db_name, slot_name = excluded.slot_name,
			publication_name = excluded.publication_name, updated_at = excluded.updated_at
		RETURNING `+sourceCols,
		src.Name, src.SystemIdentifier, src.Database, src.SlotName, src.PublicationName, src.State, src.LastError, now, now))
	if err != nil {
		return store.Source{}, s.fail(err, "upsert source %q", src.Name)
	}
	return out, nil
}

// GetSource returns the source by name.
func (s *Store) GetSource(ctx context.Context, name string) (store.Source, error) {
	src, err := scanSource(s.queryRow(ctx, s.db, `SELECT `+sourceCols+` FROM @sources WHERE name = ?`, name))
	if err != nil {
		return store.Source{}, fmt.Errorf("get source %q: %w", name, notFound(err))
	}
	return src, nil
}

// ListSources returns every source ordered by name.
func (s *Store) ListSources(ctx context.Context) ([]store.Source, error) {
	return list(ctx, s, scanSource, "list sources", `SELECT `+sourceCols+` FROM @sources ORDER BY name`)
}

// SetSourceState records the source's state and last error.
func (s *Store) SetSourceState(ctx context.Context, sourceID int64, state, lastError string) error {
	return s.execOne(ctx, fmt.Sprintf("set state of source %d", sourceID),
		`UPDATE @sources SET state = ?, last_error = ?, updated_at = ? WHERE id = ?`,
		state, lastError, tv(time.Now()), sourceID)
}

// SetSourcePaused records whether the user paused the source at run time
// (btfu pause / the TUI); it survives restarts until resumed.
func (s *Store) SetSourcePaused(ctx context.Context, sourceID int64, paused bool) error {
	return s.execOne(ctx, fmt.Sprintf("set paused of source %d", sourceID),
		`UPDATE @sources SET paused = ?, updated_at = ? WHERE id = ?`, paused, tv(time.Now()), sourceID)
}

// Chains.

const chainCols = `id, source_id, slot_name, start_lsn, started_at, cursor_lsn, cursor_time, ended_at, end_reason`

func scanChain(r scanner) (c store.Chain, err error) {
	err = r.Scan(&c.ID, &c.SourceID, &c.SlotName, lsnCol{&c.StartLSN}, timeCol{&c.StartedAt},
		lsnCol{&c.CursorLSN}, timeCol{&c.CursorTime}, timeCol{&c.EndedAt}, &c.EndReason)
	return c, err
}

// CreateChain records a new chain. A CursorLSN below StartLSN is raised to
// StartLSN: an empty chain covers up to its start.
func (s *Store) CreateChain(ctx context.Context, c store.Chain) (store.Chain, error) {
	c.CursorLSN = max(c.CursorLSN, c.StartLSN)
	c.StartedAt, c.CursorTime, c.EndedAt = utc(c.StartedAt), utc(c.CursorTime), utc(c.EndedAt)
	id, err := s.insertID(ctx, s.db, `INSERT INTO @chains
		(source_id, slot_name, start_lsn, started_at, cursor_lsn, cursor_time, ended_at, end_reason, tail_lsn)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		c.SourceID, c.SlotName, lv(c.StartLSN), tv(c.StartedAt), lv(c.CursorLSN), tv(c.CursorTime), tv(c.EndedAt), c.EndReason, lv(c.StartLSN))
	if err != nil {
		return store.Chain{}, s.fail(err, "create chain for source %d", c.SourceID)
	}
	c.ID = id
	return c, nil
}

// ListChains returns the source's chains, oldest first.
func (s *Store) ListChains(ctx context.Context, sourceID int64) ([]store.Chain, error) {
	return list(ctx, s, scanChain, fmt.Sprintf("list chains of source %d", sourceID),
		`SELECT `+chainCols+` FROM @chains WHERE source_id = ? ORDER BY id`, sourceID)
}

// advanceSQL moves a chain's cursor forward, never backward; arguments are
// lsn, lsn, at, at, chain ID.
const advanceSQL = `UPDATE @chains SET
	cursor_lsn = CASE WHEN cursor_lsn < ? THEN ? ELSE cursor_lsn END,
	cursor_time = CASE WHEN cursor_time IS NULL OR cursor_time < ? THEN ? ELSE cursor_time END
	WHERE id = ?`

// AdvanceChain moves the chain's cursor forward to lsn and at; a smaller
// lsn or earlier (or zero) time leaves that field as it is.
func (s *Store) AdvanceChain(ctx context.Context, chainID int64, lsn pglogrepl.LSN, at time.Time) error {
	return s.execOne(ctx, fmt.Sprintf("advance chain %d to %s", chainID, lsn),
		advanceSQL, lv(lsn), lv(lsn), tv(at), tv(at), chainID)
}

// EndChain records that the chain ended.
func (s *Store) EndChain(ctx context.Context, chainID int64, at time.Time, reason string) error {
	return s.execOne(ctx, fmt.Sprintf("end chain %d", chainID),
		`UPDATE @chains SET ended_at = ?, end_reason = ? WHERE id = ?`, tv(at), reason, chainID)
}

// Base backups.

const baseBackupCols = `id, source_id, chain_id, consistent_lsn, snapshot_name, snapshot_time, started_at, finished_at,
	artifact_key, size_bytes, sha256, pg_dump_version, server_version, status, error`

func scanBaseBackup(r scanner) (b store.BaseBackup, err error) {
	err = r.Scan(&b.ID, &b.SourceID, idCol{&b.ChainID}, lsnCol{&b.ConsistentLSN}, &b.SnapshotName,
		timeCol{&b.SnapshotTime}, timeCol{&b.StartedAt}, timeCol{&b.FinishedAt},
		&b.ArtifactKey, &b.SizeBytes, &b.SHA256, &b.PgDumpVersion, &b.ServerVersion, &b.Status, &b.Error)
	return b, err
}

// CreateBaseBackup records a base backup. ChainID 0 means none.
func (s *Store) CreateBaseBackup(ctx context.Context, b store.BaseBackup) (store.BaseBackup, error) {
	b.SnapshotTime, b.StartedAt, b.FinishedAt = utc(b.SnapshotTime), utc(b.StartedAt), utc(b.FinishedAt)
	id, err := s.insertID(ctx, s.db, `INSERT INTO @base_backups
		(source_id, chain_id, consistent_lsn, snapshot_name, snapshot_time, started_at, finished_at,
		artifact_key, size_bytes, sha256, pg_dump_version, server_version, status, error)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		b.SourceID, idv(b.ChainID), lv(b.ConsistentLSN), b.SnapshotName, tv(b.SnapshotTime), tv(b.StartedAt), tv(b.FinishedAt),
		b.ArtifactKey, b.SizeBytes, b.SHA256, b.PgDumpVersion, b.ServerVersion, b.Status, b.Error)
	if err != nil {
		return store.BaseBackup{}, s.fail(err, "create base backup for source %d", b.SourceID)
	}
	b.ID = id
	return b, nil
}

// UpdateBaseBackup saves status, finish time, artifact key, size, checksum
// and error of the base backup b.ID.
func (s *Store) UpdateBaseBackup(ctx context.Context, b store.BaseBackup) error {
	return s.execOne(ctx, fmt.Sprintf("update base backup %d", b.ID),
		`UPDATE @base_backups SET status = ?, finished_at = ?, artifact_key = ?, size_bytes = ?, sha256 = ?, error = ? WHERE id = ?`,
		b.Status, tv(b.FinishedAt), b.ArtifactKey, b.SizeBytes, b.SHA256, b.Error, b.ID)
}

// ListBaseBackups returns the source's base backups, oldest first.
func (s *Store) ListBaseBackups(ctx context.Context, sourceID int64) ([]store.BaseBackup, error) {
	return list(ctx, s, scanBaseBackup, fmt.Sprintf("list base backups of source %d", sourceID),
		`SELECT `+baseBackupCols+` FROM @base_backups WHERE source_id = ? ORDER BY id`, sourceID)
}

// DeleteBaseBackup deletes the record (not the artifact).
func (s *Store) DeleteBaseBackup(ctx context.Context, id int64) error {
	return s.execOne(ctx, fmt.Sprintf("delete base backup %d", id), `DELETE FROM @base_backups WHERE id = ?`, id)
}

// Segments.

const segmentCols = `id, source_id, chain_id, format_version, artifact_key, first_commit_lsn, last_commit_lsn, end_lsn,
	prev_end_lsn, first_commit_at, last_commit_at, tx_count, change_count, raw_bytes, stored_bytes, sha256, created_at`

func scanSegment(r scanner) (g store.Segment, err error) {
	err = r.Scan(&g.ID, &g.SourceID, &g.ChainID, &g.FormatVersion, &g.ArtifactKey,
		lsnCol{&g.FirstCommitLSN}, lsnCol{&g.LastCommitLSN}, lsnCol{&g.EndLSN}, lsnCol{&g.PrevEndLSN},
		timeCol{&g.FirstCommitAt}, timeCol{&g.LastCommitAt}, &g.TxCount, &g.ChangeCount,
		&g.RawBytes, &g.StoredBytes, &g.SHA256, timeCol{&g.CreatedAt})
	return g, err
}

// AddSegment records a segment and advances its chain's cursor, in one
// transaction that holds the chain row. The segment must follow the newest
// segment ever added to the chain (its start for the first), begin no
// earlier and end later; otherwise store.ErrChainOrder. SourceID 0 is
// taken from the chain; a zero CreatedAt becomes now.
func (s *Store) AddSegment(ctx context.Context, g store.Segment) (store.Segment, error) {
	if g.CreatedAt.IsZero() {
		g.CreatedAt = time.Now()
	}
	g.FirstCommitAt, g.LastCommitAt, g.CreatedAt = utc(g.FirstCommitAt), utc(g.LastCommitAt), utc(g.CreatedAt)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		var sourceID int64
		var tail pglogrepl.LSN
		err := s.queryRow(ctx, tx, `SELECT source_id, tail_lsn FROM @chains WHERE id = ?`+s.d.ForUpdate, g.ChainID).
			Scan(&sourceID, lsnCol{&tail})
		if err != nil {
			return fmt.Errorf("read chain %d: %w", g.ChainID, notFound(err))
		}
		if g.SourceID == 0 {
			g.SourceID = sourceID
		} else if g.SourceID != sourceID {
			return fmt.Errorf("segment of source %d, but chain %d belongs to source %d", g.SourceID, g.ChainID, sourceID)
		}
		switch {
		case g.PrevEndLSN != tail:
			return fmt.Errorf("expected prev end LSN %s (end of the chain's newest segment, or its start), got %s: %w",
				tail, g.PrevEndLSN, store.ErrChainOrder)
		case g.FirstCommitLSN < g.PrevEndLSN:
			return fmt.Errorf("first commit LSN %s is before prev end LSN %s: %w", g.FirstCommitLSN, g.PrevEndLSN, store.ErrChainOrder)
		case g.EndLSN <= g.PrevEndLSN:
			return fmt.Errorf("end LSN %s is not after prev end LSN %s: %w", g.EndLSN, g.PrevEndLSN, store.ErrChainOrder)
		}
		g.ID, err = s.insertSegment(ctx, tx, g)
		if err != nil {
			return s.fail(err, "insert")
		}
		if _, err := s.exec(ctx, tx, `UPDATE @chains SET tail_lsn = ? WHERE id = ?`, lv(g.EndLSN), g.ChainID); err != nil {
			return fmt.Errorf("update chain %d: %w", g.ChainID, err)
		}
		if _, err := s.exec(ctx, tx, advanceSQL, lv(g.EndLSN), lv(g.EndLSN), tv(g.LastCommitAt), tv(g.LastCommitAt), g.ChainID); err != nil {
			return fmt.Errorf("advance chain %d: %w", g.ChainID, err)
		}
		return nil
	})
	if err != nil {
		return store.Segment{}, fmt.Errorf("add segment %q to chain %d: %w", g.ArtifactKey, g.ChainID, err)
	}
	return g, nil
}

// insertSegment writes one segment row in tx and returns its ID.
func (s *Store) insertSegment(ctx context.Context, tx *sql.Tx, g store.Segment) (int64, error) {
	return s.insertID(ctx, tx, `INSERT INTO @segments
		(source_id, chain_id, format_version, artifact_key, first_commit_lsn, last_commit_lsn, end_lsn, prev_end_lsn,
		first_commit_at, last_commit_at, tx_count, change_count, raw_bytes, stored_bytes, sha256, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		g.SourceID, g.ChainID, g.FormatVersion, g.ArtifactKey, lv(g.FirstCommitLSN), lv(g.LastCommitLSN), lv(g.EndLSN), lv(g.PrevEndLSN),
		tv(g.FirstCommitAt), tv(g.LastCommitAt), g.TxCount, g.ChangeCount, g.RawBytes, g.StoredBytes, g.SHA256, tv(g.CreatedAt))
}

// ListSegments returns the source's segments whose EndLSN > fromLSN,
// ordered by chain, then FirstCommitLSN.
func (s *Store) ListSegments(ctx context.Context, sourceID int64, fromLSN pglogrepl.LSN) ([]store.Segment, error) {
	return list(ctx, s, scanSegment, fmt.Sprintf("list segments of source %d", sourceID),
		`SELECT `+segmentCols+` FROM @segments WHERE source_id = ? AND end_lsn > ? ORDER BY chain_id, first_commit_lsn, id`,
		sourceID, lv(fromLSN))
}

// DeleteSegment deletes the record (not the artifact). The chain's order
// rule still refers to the newest segment ever added.
func (s *Store) DeleteSegment(ctx context.Context, id int64) error {
	return s.execOne(ctx, fmt.Sprintf("delete segment %d", id), `DELETE FROM @segments WHERE id = ?`, id)
}

// ReplaceSegments swaps consecutive segments for one holding the same
// transactions (see store.Store).
func (s *Store) ReplaceSegments(ctx context.Context, oldIDs []int64, g store.Segment) (store.Segment, error) {
	if g.CreatedAt.IsZero() {
		g.CreatedAt = time.Now()
	}
	g.FirstCommitAt, g.LastCommitAt, g.CreatedAt = utc(g.FirstCommitAt), utc(g.LastCommitAt), utc(g.CreatedAt)
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		if len(oldIDs) == 0 {
			return errors.New("no segments to replace")
		}
		// Lock the chain as AddSegment does, so the two never interleave.
		var sourceID int64
		var tail pglogrepl.LSN
		if err := s.queryRow(ctx, tx, `SELECT source_id, tail_lsn FROM @chains WHERE id = ?`+s.d.ForUpdate, g.ChainID).
			Scan(&sourceID, lsnCol{&tail}); err != nil {
			return fmt.Errorf("read chain %d: %w", g.ChainID, notFound(err))
		}
		if g.SourceID == 0 {
			g.SourceID = sourceID
		}
		var old []store.Segment
		for _, id := range oldIDs {
			o, err := scanSegment(s.queryRow(ctx, tx, `SELECT `+segmentCols+` FROM @segments WHERE id = ?`, id))
			if err != nil {
				return fmt.Errorf("segment %d: %w", id, notFound(err))
			}
			old = append(old, o)
		}
		var txs, changes int64
		for i, o := range old {
			switch {
			case o.ChainID != g.ChainID || o.SourceID != g.SourceID:
				return fmt.Errorf("segment %d is in chain %d of source %d, not chain %d of source %d", o.ID, o.ChainID, o.SourceID, g.ChainID, g.SourceID)
			case i > 0 && o.PrevEndLSN != old[i-1].EndLSN:
				return fmt.Errorf("segment %d starts at %s, not where segment %d ends (%s): %w", o.ID, o.PrevEndLSN, old[i-1].ID, old[i-1].EndLSN, store.ErrChainOrder)
			}
			txs += o.TxCount
			changes += o.ChangeCount
		}
		first, last := old[0], old[len(old)-1]
		switch {
		case g.PrevEndLSN != first.PrevEndLSN || g.FirstCommitLSN != first.FirstCommitLSN:
			return fmt.Errorf("replacement starts at %s (first commit %s), the segments at %s (%s): %w", g.PrevEndLSN, g.FirstCommitLSN, first.PrevEndLSN, first.FirstCommitLSN, store.ErrChainOrder)
		case g.EndLSN != last.EndLSN || g.LastCommitLSN != last.LastCommitLSN:
			return fmt.Errorf("replacement ends at %s (last commit %s), the segments at %s (%s): %w", g.EndLSN, g.LastCommitLSN, last.EndLSN, last.LastCommitLSN, store.ErrChainOrder)
		case g.TxCount != txs || g.ChangeCount != changes:
			return fmt.Errorf("replacement holds %d transactions and %d changes, the segments %d and %d", g.TxCount, g.ChangeCount, txs, changes)
		}
		for _, o := range old {
			if _, err := s.exec(ctx, tx, `DELETE FROM @segments WHERE id = ?`, o.ID); err != nil {
				return fmt.Errorf("delete segment %d: %w", o.ID, err)
			}
		}
		var err error
		g.ID, err = s.insertSegment(ctx, tx, g)
		if err != nil {
			return s.fail(err, "insert")
		}
		return nil
	})
	if err != nil {
		return store.Segment{}, fmt.Errorf("replace %d segments of chain %d by %q: %w", len(oldIDs), g.ChainID, g.ArtifactKey, err)
	}
	return g, nil
}

// Schema snapshots.

const schemaSnapshotCols = `id, source_id, lsn, taken_at, artifact_key, size_bytes, sha256`

func scanSchemaSnapshot(r scanner) (x store.SchemaSnapshot, err error) {
	err = r.Scan(&x.ID, &x.SourceID, lsnCol{&x.LSN}, timeCol{&x.TakenAt}, &x.ArtifactKey, &x.SizeBytes, &x.SHA256)
	return x, err
}

// AddSchemaSnapshot records a schema snapshot.
func (s *Store) AddSchemaSnapshot(ctx context.Context, x store.SchemaSnapshot) (store.SchemaSnapshot, error) {
	x.TakenAt = utc(x.TakenAt)
	id, err := s.insertID(ctx, s.db, `INSERT INTO @schema_snapshots (source_id, lsn, taken_at, artifact_key, size_bytes, sha256)
		VALUES (?, ?, ?, ?, ?, ?)`, x.SourceID, lv(x.LSN), tv(x.TakenAt), x.ArtifactKey, x.SizeBytes, x.SHA256)
	if err != nil {
		return store.SchemaSnapshot{}, s.fail(err, "add schema snapshot %q", x.ArtifactKey)
	}
	x.ID = id
	return x, nil
}

// ListSchemaSnapshots returns the source's schema snapshots ordered by
// TakenAt.
// AddTableCoverage records when a table joined or left the publication.
func (s *Store) AddTableCoverage(ctx context.Context, c store.TableCoverage) (store.TableCoverage, error) {
	c.AddedAt = utc(c.AddedAt)
	id, err := s.insertID(ctx, s.db, `INSERT INTO @table_coverage (source_id, table_name, from_lsn, added_at, left_out, reason) VALUES (?, ?, ?, ?, ?, ?)`,
		c.SourceID, c.Table, lv(c.FromLSN), tv(c.AddedAt), c.LeftOut, c.Reason)
	if err != nil {
		return store.TableCoverage{}, s.fail(err, "add table coverage of %q", c.Table)
	}
	c.ID = id
	return c, nil
}

// ListTableCoverage returns the source's table coverage records, oldest
// first.
func (s *Store) ListTableCoverage(ctx context.Context, sourceID int64) ([]store.TableCoverage, error) {
	scan := func(r scanner) (c store.TableCoverage, err error) {
		err = r.Scan(&c.ID, &c.SourceID, &c.Table, lsnCol{&c.FromLSN}, timeCol{&c.AddedAt}, &c.LeftOut, &c.Reason)
		return c, err
	}
	return list(ctx, s, scan, fmt.Sprintf("list table coverage of source %d", sourceID),
		`SELECT id, source_id, table_name, from_lsn, added_at, left_out, reason FROM @table_coverage WHERE source_id = ? ORDER BY id`, sourceID)
}

func (s *Store) ListSchemaSnapshots(ctx context.Context, sourceID int64) ([]store.SchemaSnapshot, error) {
	return list(ctx, s, scanSchemaSnapshot, fmt.Sprintf("list schema snapshots of source %d", sourceID),
		`SELECT `+schemaSnapshotCols+` FROM @schema_snapshots WHERE source_id = ? ORDER BY taken_at, id`, sourceID)
}

// Sequence snapshots.

// AddSequenceSnapshot records a snapshot and its values in one transaction.
func (s *Store) AddSequenceSnapshot(ctx context.Context, x store.SequenceSnapshot) (store.SequenceSnapshot, error) {
	x.TakenAt = utc(x.TakenAt)
	x.Values = slices.Clone(x.Values)
	err := s.inTx(ctx, func(tx *sql.Tx) (err error) {
		x.ID, err = s.insertID(ctx, tx, `INSERT INTO @sequence_snapshots (source_id, lsn, taken_at) VALUES (?, ?, ?)`,
			x.SourceID, lv(x.LSN), tv(x.TakenAt))
		if err != nil {
			return s.fail(err, "insert")
		}
		for _, v := range x.Values {
			if _, err := s.exec(ctx, tx, `INSERT INTO @sequence_values (snapshot_id, schema_name, seq_name, last_value, is_called)
				VALUES (?, ?, ?, ?, ?)`, x.ID, v.Schema, v.Name, v.LastValue, v.IsCalled); err != nil {
				return s.fail(err, "insert value of %s.%s", v.Schema, v.Name)
			}
		}
		return nil
	})
	if err != nil {
		return store.SequenceSnapshot{}, fmt.Errorf("add sequence snapshot of source %d: %w", x.SourceID, err)
	}
	return x, nil
}

// ListSequenceSnapshots returns the source's sequence snapshots ordered by
// TakenAt, each with its values ordered by schema and name. One statement
// reads both, so snapshots and values are consistent.
func (s *Store) ListSequenceSnapshots(ctx context.Context, sourceID int64) ([]store.SequenceSnapshot, error) {
	what := fmt.Sprintf("list sequence snapshots of source %d", sourceID)
	type row struct {
		snap store.SequenceSnapshot
		val  *store.SequenceValue // nil for a snapshot without values
	}
	rows, err := list(ctx, s, func(r scanner) (row, error) {
		var x row
		var schema, name sql.NullString
		var last sql.NullInt64
		var called sql.NullBool
		err := r.Scan(&x.snap.ID, &x.snap.SourceID, lsnCol{&x.snap.LSN}, timeCol{&x.snap.TakenAt}, &schema, &name, &last, &called)
		if schema.Valid {
			x.val = &store.SequenceValue{Schema: schema.String, Name: name.String, LastValue: last.Int64, IsCalled: called.Bool}
		}
		return x, err
	}, what, `SELECT s.id, s.source_id, s.lsn, s.taken_at, v.schema_name, v.seq_name, v.last_value, v.is_called
		FROM @sequence_snapshots s LEFT JOIN @sequence_values v ON v.snapshot_id = s.id
		WHERE s.source_id = ? ORDER BY s.taken_at, s.id, v.schema_name, v.seq_name`, sourceID)
	if err != nil {
		return nil, err
	}
	var out []store.SequenceSnapshot
	for _, r := range rows {
		if len(out) == 0 || out[len(out)-1].ID != r.snap.ID {
			out = append(out, r.snap)
		}
		if r.val != nil {
			last := &out[len(out)-1]
			last.Values = append(last.Values, *r.val)
		}
	}
	return out, nil
}

// DeleteSequenceSnapshotsBefore deletes the source's sequence snapshots
// taken before before, with their values, and returns how many it deleted.
func (s *Store) DeleteSequenceSnapshotsBefore(ctx context.Context, sourceID int64, before time.Time) (int64, error) {
	res, err := s.exec(ctx, s.db, `DELETE FROM @sequence_snapshots WHERE source_id = ? AND taken_at < ?`, sourceID, tv(before))
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("delete sequence snapshots of source %d before %s: %w", sourceID, before.UTC().Format(time.RFC3339Nano), err)
}

// Jobs.

const jobCols = `id, source_id, kind, status, started_at, finished_at, detail, error`

func scanJob(r scanner) (j store.Job, err error) {
	err = r.Scan(&j.ID, idCol{&j.SourceID}, &j.Kind, &j.Status, timeCol{&j.StartedAt}, timeCol{&j.FinishedAt}, &j.Detail, &j.Error)
	return j, err
}

// StartJob records a job. An empty Status becomes store.JobRunning.
func (s *Store) StartJob(ctx context.Context, j store.Job) (store.Job, error) {
	if j.Status == "" {
		j.Status = store.JobRunning
	}
	j.StartedAt, j.FinishedAt = utc(j.StartedAt), utc(j.FinishedAt)
	id, err := s.insertID(ctx, s.db, `INSERT INTO @jobs (source_id, kind, status, started_at, finished_at, detail, error)
		VALUES (?, ?, ?, ?, ?, ?, ?)`, idv(j.SourceID), j.Kind, j.Status, tv(j.StartedAt), tv(j.FinishedAt), j.Detail, j.Error)
	if err != nil {
		return store.Job{}, s.fail(err, "start %s job", j.Kind)
	}
	j.ID = id
	return j, nil
}

// FinishJob records the outcome of job id.
func (s *Store) FinishJob(ctx context.Context, id int64, status, detail, errText string, at time.Time) error {
	return s.execOne(ctx, fmt.Sprintf("finish job %d", id),
		`UPDATE @jobs SET status = ?, detail = ?, error = ?, finished_at = ? WHERE id = ?`, status, detail, errText, tv(at), id)
}

// ListJobs returns the newest limit jobs (all for limit <= 0) of the
// source (of every source and none for sourceID 0), newest first.
func (s *Store) ListJobs(ctx context.Context, sourceID int64, limit int) ([]store.Job, error) {
	var w where
	if sourceID != 0 {
		w.add("source_id = ?", sourceID)
	}
	query := `SELECT ` + jobCols + ` FROM @jobs` + w.sql() + ` ORDER BY id DESC` + w.limit(limit)
	return list(ctx, s, scanJob, fmt.Sprintf("list jobs of source %d", sourceID), query, w.args...)
}

// Events.

const eventCols = `id, source_id, at, level, kind, message, attrs`

// levels in increasing severity.
var levels = []string{"debug", "info", "warn", "error"}

func scanEvent(r scanner) (e store.Event, err error) {
	var attrs sql.NullString
	if err = r.Scan(&e.ID, idCol{&e.SourceID}, timeCol{&e.At}, &e.Level, &e.Kind, &e.Message, &attrs); err != nil {
		return e, err
	}
	if attrs.Valid {
		if err := json.Unmarshal([]byte(attrs.String), &e.Attrs); err != nil {
			return e, fmt.Errorf("attrs of event %d: %w", e.ID, err)
		}
	}
	return e, nil
}

// AddEvent records an event. A zero At becomes now; empty Attrs are
// stored (and read back) as nil.
func (s *Store) AddEvent(ctx context.Context, e store.Event) (store.Event, error) {
	if e.At.IsZero() {
		e.At = time.Now()
	}
	e.At = utc(e.At)
	var attrs any
	if len(e.Attrs) > 0 {
		b, err := json.Marshal(e.Attrs)
		if err != nil {
			return store.Event{}, fmt.Errorf("add event %s: %w", e.Kind, err)
		}
		attrs = string(b)
	} else {
		e.Attrs = nil
	}
	id, err := s.insertID(ctx, s.db, `INSERT INTO @events (source_id, at, level, kind, message, attrs) VALUES (?, ?, ?, ?, ?, ?)`,
		idv(e.SourceID), tv(e.At), e.Level, e.Kind, e.Message, attrs)
	if err != nil {
		return store.Event{}, s.fail(err, "add event %s", e.Kind)
	}
	e.ID = id
	return e, nil
}

// ListEvents returns the newest f.Limit events matching f, in ascending ID
// order. MinLevel keeps events of that level and above (debug < info <
// warn < error); events with another level only show without MinLevel.
func (s *Store) ListEvents(ctx context.Context, f store.EventFilter) ([]store.Event, error) {
	var w where
	if f.SourceID != 0 {
		w.add("source_id = ?", f.SourceID)
	}
	if f.MinLevel != "" {
		i := slices.Index(levels, f.MinLevel)
		if i < 0 {
			return nil, fmt.Errorf("list events: unknown level %q (want one of %s)", f.MinLevel, strings.Join(levels, ", "))
		}
		w.add("level IN (?"+strings.Repeat(", ?", len(levels)-i-1)+")", anySlice(levels[i:])...)
	}
	if f.AfterID != 0 {
		w.add("id > ?", f.AfterID)
	}
	query := `SELECT ` + eventCols + ` FROM @events` + w.sql() + ` ORDER BY id DESC` + w.limit(f.Limit)
	events, err := list(ctx, s, scanEvent, "list events", query, w.args...)
	slices.Reverse(events)
	return events, err
}

// where builds a WHERE clause and its arguments.
type where struct {
	conds []string
	args  []any
}

func (w *where) add(cond string, args ...any) {
	w.conds = append(w.conds, cond)
	w.args = append(w.args, args...)
}

func (w *where) sql() string {
	if len(w.conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(w.conds, " AND ")
}

// limit returns a LIMIT clause for n > 0, adding n to the arguments; call
// it after every add.
func (w *where) limit(n int) string {
	if n <= 0 {
		return ""
	}
	w.args = append(w.args, n)
	return " LIMIT ?"
}

func anySlice(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

// Drills.

const drillCols = `id, source_id, started_at, finished_at, status, trigger_kind, lsn, base_key, category, error, hint, phases, tables, source_bytes, restored_bytes, artifact_bytes`

func scanDrill(r scanner) (d store.Drill, err error) {
	var phases, tables string
	if err = r.Scan(&d.ID, idCol{&d.SourceID}, timeCol{&d.StartedAt}, timeCol{&d.FinishedAt}, &d.Status, &d.Trigger, lsnCol{&d.LSN},
		&d.BaseKey, &d.Category, &d.Error, &d.Hint, &phases, &tables, &d.SourceBytes, &d.RestoredBytes, &d.ArtifactBytes); err != nil {
		return d, err
	}
	if err := json.Unmarshal([]byte(phases), &d.Phases); err != nil {
		return d, fmt.Errorf("phases of drill %d: %w", d.ID, err)
	}
	if err := json.Unmarshal([]byte(tables), &d.Tables); err != nil {
		return d, fmt.Errorf("tables of drill %d: %w", d.ID, err)
	}
	return d, nil
}

// drillJSON is the stored form of a drill's phases and tables; empty
// lists are stored (and read back) as nil.
func drillJSON(d *store.Drill) (phases, tables string, err error) {
	if len(d.Phases) == 0 {
		d.Phases = nil
	}
	if len(d.Tables) == 0 {
		d.Tables = nil
	}
	p, err := json.Marshal(d.Phases)
	if err != nil {
		return "", "", err
	}
	t, err := json.Marshal(d.Tables)
	return string(p), string(t), err
}

// StartDrill records a drill. An empty Status becomes store.DrillRunning.
func (s *Store) StartDrill(ctx context.Context, d store.Drill) (store.Drill, error) {
	if d.Status == "" {
		d.Status = store.DrillRunning
	}
	d.StartedAt, d.FinishedAt = utc(d.StartedAt), utc(d.FinishedAt)
	phases, tables, err := drillJSON(&d)
	if err != nil {
		return store.Drill{}, fmt.Errorf("start drill: %w", err)
	}
	id, err := s.insertID(ctx, s.db, `INSERT INTO @drills (source_id, started_at, finished_at, status, trigger_kind, lsn, base_key, category, error, hint, phases, tables, source_bytes, restored_bytes, artifact_bytes)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, d.SourceID, tv(d.StartedAt), tv(d.FinishedAt), d.Status, d.Trigger, lv(d.LSN),
		d.BaseKey, d.Category, d.Error, d.Hint, phases, tables, d.SourceBytes, d.RestoredBytes, d.ArtifactBytes)
	if err != nil {
		return store.Drill{}, s.fail(err, "start drill of source %d", d.SourceID)
	}
	d.ID = id
	return d, nil
}

// FinishDrill saves the outcome of drill d.ID.
func (s *Store) FinishDrill(ctx context.Context, d store.Drill) error {
	phases, tables, err := drillJSON(&d)
	if err != nil {
		return fmt.Errorf("finish drill %d: %w", d.ID, err)
	}
	return s.execOne(ctx, fmt.Sprintf("finish drill %d", d.ID),
		`UPDATE @drills SET finished_at = ?, status = ?, trigger_kind = ?, lsn = ?, base_key = ?, category = ?, error = ?, hint = ?, phases = ?, tables = ?,
			source_bytes = ?, restored_bytes = ?, artifact_bytes = ? WHERE id = ?`,
		tv(utc(d.FinishedAt)), d.Status, d.Trigger, lv(d.LSN), d.BaseKey, d.Category, d.Error, d.Hint, phases, tables,
		d.SourceBytes, d.RestoredBytes, d.ArtifactBytes, d.ID)
}

// ListDrills returns the source's newest limit drills (all for limit <=
// 0), newest first.
func (s *Store) ListDrills(ctx context.Context, sourceID int64, limit int) ([]store.Drill, error) {
	var w where
	w.add("source_id = ?", sourceID)
	query := `SELECT ` + drillCols + ` FROM @drills` + w.sql() + ` ORDER BY id DESC` + w.limit(limit)
	return list(ctx, s, scanDrill, fmt.Sprintf("list drills of source %d", sourceID), query, w.args...)
}

// Package sqlstore implements store.Store over database/sql. The SQLite and
// PostgreSQL backends (store/sqlite, store/postgres) share every query and
// migration here and differ only by a Dialect.
//
// Encoding: times are BIGINT microseconds since the Unix epoch (NULL for the
// zero time) and come back in UTC. LSNs are BIGINT holding lsn - 2^63, so
// SQL compares and sorts them as the unsigned numbers they are (by hand:
// lsn = stored + 9223372036854775808). Optional references (a job or event
// not tied to a source, a base backup without a chain) are NULL for ID 0.
// Event.Attrs is JSON text, NULL when empty.
//
// State lives in tables only, so several processes may share one store:
// AddSegment locks the chain row it extends, and migrations run under the
// dialect's lock.
package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/store"
)

// Dialect describes what differs between database engines.
type Dialect struct {
	// Where names the store in messages: a file path, or server, database
	// and schema. Never a password.
	Where string
	// Numbered selects $1, $2, ... placeholders (PostgreSQL) instead of ?.
	Numbered bool
	// Prefix is put before every table name: a quoted schema and a dot
	// (`"btfu".`), or empty.
	Prefix string
	// AutoID is the column definition of an int64 primary key that the
	// database assigns, increasing and never reused.
	AutoID string
	// ForUpdate is appended to a SELECT of one row to lock it until the
	// transaction ends; empty where write transactions exclude each other
	// anyway (SQLite's BEGIN IMMEDIATE).
	ForUpdate string
	// Prepare, if set, runs first in every migration transaction: take a
	// lock that serializes migrations, create the schema.
	Prepare func(ctx context.Context, tx *sql.Tx) error
	// TableExists reports whether a table (name without Prefix) exists.
	TableExists func(ctx context.Context, tx *sql.Tx, table string) (bool, error)
	// Classify returns store.ErrConflict for a unique violation,
	// store.ErrNotFound for a foreign key violation, nil for other errors.
	Classify func(err error) error
}

// Store implements store.Store on a *sql.DB.
type Store struct {
	db *sql.DB
	d  Dialect
}

var _ store.Store = (*Store)(nil)

// Open migrates db to store.SchemaVersion and returns a Store on it. It
// takes ownership of db: db is closed when Open fails or by Store.Close.
func Open(ctx context.Context, db *sql.DB, d Dialect) (*Store, error) {
	s := &Store{db: db, d: d}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// DB returns the underlying database, for backend packages and their tests.
func (s *Store) DB() *sql.DB { return s.db }

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// rebind turns the shared query form into the dialect's: @ marks a table
// name and gets the prefix, ? becomes $n where placeholders are numbered.
func (s *Store) rebind(query string) string {
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		switch c := query[i]; {
		case c == '@':
			b.WriteString(s.d.Prefix)
		case c == '?' && s.d.Numbered:
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func (s *Store) exec(ctx context.Context, q querier, query string, args ...any) (sql.Result, error) {
	return q.ExecContext(ctx, s.rebind(query), args...)
}

func (s *Store) queryRow(ctx context.Context, q querier, query string, args ...any) *sql.Row {
	return q.QueryRowContext(ctx, s.rebind(query), args...)
}

// execOne runs an UPDATE or DELETE of one row by ID and reports
// store.ErrNotFound, wrapped in what, when no row matched.
func (s *Store) execOne(ctx context.Context, what string, query string, args ...any) error {
	res, err := s.exec(ctx, s.db, query, args...)
	if err != nil {
		return s.fail(err, "%s", what)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

// list runs a query and scans every row with scan.
func list[T any](ctx context.Context, s *Store, scan func(scanner) (T, error), what, query string, args ...any) ([]T, error) {
	rows, err := s.db.QueryContext(ctx, s.rebind(query), args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	return out, nil
}

// inTx runs fn in a transaction, committing when fn returns nil.
func (s *Store) inTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// fail wraps err with context, marking constraint violations with the
// matching store sentinel.
func (s *Store) fail(err error, format string, args ...any) error {
	if kind := s.d.Classify(err); kind != nil {
		err = fmt.Errorf("%w: %w", kind, err)
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface{ Scan(dest ...any) error }

// utc is t as stored and read back: UTC, truncated to the microsecond.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return time.UnixMicro(t.UnixMicro()).UTC()
}

// tv is the stored form of a time.
func tv(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

// timeCol scans a stored time.
type timeCol struct{ t *time.Time }

func (c timeCol) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*c.t = time.Time{}
	case int64:
		*c.t = time.UnixMicro(v).UTC()
	default:
		return fmt.Errorf("time column holds %T, want integer", v)
	}
	return nil
}

// lsnBias maps LSNs (uint64) onto BIGINT keeping their order: the stored
// value is lsn - 2^63, so 0/0 is stored as -2^63 and SQL comparisons and
// ORDER BY work over the whole LSN range.
const lsnBias = 1 << 63

// lv is the stored form of an LSN.
func lv(l pglogrepl.LSN) int64 { return int64(uint64(l) ^ lsnBias) }

// lsnCol scans a stored LSN.
type lsnCol struct{ l *pglogrepl.LSN }

func (c lsnCol) Scan(v any) error {
	n, ok := v.(int64)
	if !ok {
		return fmt.Errorf("LSN column holds %T, want integer", v)
	}
	*c.l = pglogrepl.LSN(uint64(n) ^ lsnBias)
	return nil
}

// idv is the stored form of an optional reference: NULL for 0.
func idv(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// idCol scans an optional reference.
type idCol struct{ id *int64 }

func (c idCol) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*c.id = 0
	case int64:
		*c.id = v
	default:
		return fmt.Errorf("ID column holds %T, want integer", v)
	}
	return nil
}

// insertID runs an INSERT ... RETURNING id.
func (s *Store) insertID(ctx context.Context, q querier, query string, args ...any) (int64, error) {
	var id int64
	err := s.queryRow(ctx, q, query+" RETURNING id", args...).Scan(&id)
	return id, err
}

// notFound turns sql.ErrNoRows into store.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return store.ErrNotFound
	}
	return err
}

// Package sqlite is the default metadata store: one SQLite file.
//
// The file is created with mode 0600 (its directory 0700 when created).
// Connections use WAL with synchronous=FULL, so a recorded segment survives
// a crash or power loss, foreign keys on, a busy timeout, and BEGIN
// IMMEDIATE transactions, so concurrent writers wait for each other instead
// of failing on a lock upgrade.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"

	"github.com/mattn/go-sqlite3"

	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/sqlstore"
)

// BusyTimeoutMillis is how long a statement waits for another connection's
// write lock before failing.
const BusyTimeoutMillis = 30000

// Open opens (creating and migrating as needed) the SQLite metadata store
// at path.
func Open(ctx context.Context, path string) (store.Store, error) {
	if path == "" {
		return nil, errors.New("open metadata store: empty SQLite path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open metadata store %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o700); err != nil {
		return nil, fmt.Errorf("open metadata store %s: %w", abs, err)
	}
	// Create the file ourselves so it gets 0600 (SQLite would use 0644);
	// the WAL and shared-memory files take their mode from it.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open metadata store %s: %w", abs, err)
	}
	f.Close()
	params := url.Values{
		"_txlock":       {"immediate"},
		"_journal_mode": {"WAL"},
		"_synchronous":  {"FULL"},
		"_foreign_keys": {"on"},
		"_busy_timeout": {fmt.Sprint(BusyTimeoutMillis)},
	}
	// A file: URI so that any character in the path (even ?) is escaped.
	dsn := "file:" + (&url.URL{Path: abs}).EscapedPath() + "?" + params.Encode()
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("open metadata store %s: %w", abs, err)
	}
	s, err := sqlstore.Open(ctx, db, sqlstore.Dialect{
		Where:       abs,
		AutoID:      "INTEGER PRIMARY KEY AUTOINCREMENT",
		TableExists: tableExists,
		Classify:    classify,
	})
	if err != nil {
		return nil, err // names the path
	}
	return s, nil
}

func tableExists(ctx context.Context, tx *sql.Tx, table string) (bool, error) {
	var ok bool
	err := tx.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?)`, table).Scan(&ok)
	return ok, err
}

func classify(err error) error {
	var se sqlite3.Error
	if !errors.As(err, &se) {
		return nil
	}
	switch se.ExtendedCode {
	case sqlite3.ErrConstraintUnique, sqlite3.ErrConstraintPrimaryKey:
		return store.ErrConflict
	case sqlite3.ErrConstraintForeignKey:
		return store.ErrNotFound
	}
	return nil
}

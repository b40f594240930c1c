// Package sqlite is the default metadata store: one SQLite file.
//
// The file is created with mode 0600 (its directory 0700 when created).
// Connections use WAL with synchronous=FULL, so a recorded segment survives
// a crash or power loss, foreign keys on, a busy timeout, and BEGIN
// IMMEDIATE transactions, so concurrent writers wait for each other instead
// of failing on a lock upgrade. Opening (and migrating) starts over while
// SQLite answers busy, so several processes may open one store at once.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/url"
	"os"
	"path/filepath"
	"time"

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
	if err := createPrivate(abs); err != nil {
		return nil, fmt.Errorf("open metadata store %s: %w", abs, err)
	}
	params := url.Values{
		"_txlock":       {"immediate"},
		"_journal_mode": {"WAL"},
		"_synchronous":  {"FULL"},
		"_foreign_keys": {"on"},
		"_busy_timeout": {fmt.Sprint(BusyTimeoutMillis)},
	}
	// A file: URI so that any character in the path (even ?) is escaped.
	dsn := "file:" + (&url.URL{Path: abs}).EscapedPath() + "?" + params.Encode()
	// Every statement waits up to the busy timeout for another
	// connection's lock, but SQLite answers SQLITE_BUSY at once where
	// waiting could deadlock: a read transaction that must upgrade to a
	// write, which is what switching a new file to WAL does. Two processes
	// opening a new store together (a daemon starting while `btfu status`
	// polls) meet it, so opening and migrating start over until the busy
	// timeout has passed.
	deadline := time.Now().Add(BusyTimeoutMillis * time.Millisecond)
	for wait := 5 * time.Millisecond; ; wait = min(2*wait, 250*time.Millisecond) {
		s, err := open(ctx, abs, dsn)
		if err == nil || !busy(err) || time.Now().After(deadline) {
			return s, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait/2 + rand.N(wait)):
		}
	}
}

func open(ctx context.Context, abs, dsn string) (store.Store, error) {
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

// busy reports an error SQLite gave because another connection held a
// lock.
func busy(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked)
}

// createPrivate creates the file at path with mode 0600 unless it exists
// (SQLite would use 0644; the WAL and shared-memory files take their mode
// from it). The new file appears under its name by a link, never opened
// there: closing a descriptor of the database file would drop the POSIX
// locks another connection of this process holds on it.
func createPrivate(path string) error {
	if _, err := os.Stat(path); err == nil {
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".new-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Close(); err != nil {
		return err
	}
	err = os.Link(tmp, path)
	if err == nil || errors.Is(err, fs.ErrExist) {
		return nil
	}
	// A file system without hard links: create it in place.
	f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return f.Close()
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

package sqlite_test

import (
	"database/sql"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "github.com/mattn/go-sqlite3"

	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/sqlite"
	"github.com/btfu/btfu/store/sqlstore"
	"github.com/btfu/btfu/store/storetest"
)

func open(t *testing.T, path string) store.Store {
	t.Helper()
	st, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func TestContract(t *testing.T) {
	storetest.Run(t, storetest.PerTest(
		func(t *testing.T) string { return filepath.Join(t.TempDir(), "btfu.db") },
		open))
}

// rawDB opens the file behind the store's back.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func queryString(t *testing.T, db *sql.DB, q string) string {
	t.Helper()
	var s string
	if err := db.QueryRowContext(t.Context(), q).Scan(&s); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return s
}

func TestNewFileIsPrivateInNewDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "new", "dir", "btfu.db")
	open(t, path).Close()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if m := fi.Mode().Perm(); m != 0o600 {
		t.Errorf("mode %v, want 0600", m)
	}
}

func TestPragmas(t *testing.T) {
	path := filepath.Join(t.TempDir(), "btfu.db")
	st := open(t, path)
	defer st.Close()
	db := st.(*sqlstore.Store).DB()
	for pragma, want := range map[string]string{
		"journal_mode": "wal",
		"synchronous":  "2", // FULL
		"foreign_keys": "1",
		"busy_timeout": fmt.Sprint(sqlite.BusyTimeoutMillis),
	} {
		if got := queryString(t, db, "PRAGMA "+pragma); got != want {
			t.Errorf("%s = %s, want %s", pragma, got, want)
		}
	}
	// WAL mode is a property of the file.
	if got := queryString(t, rawDB(t, path), "PRAGMA journal_mode"); got != "wal" {
		t.Errorf("file journal_mode = %s, want wal", got)
	}
}

func TestSchemaTooNewIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "btfu.db")
	open(t, path).Close()
	if _, err := rawDB(t, path).Exec(`INSERT INTO schema_version (version, applied_at) VALUES (?, 0)`, store.SchemaVersion+1); err != nil {
		t.Fatal(err)
	}
	_, err := sqlite.Open(t.Context(), path)
	if !errors.Is(err, store.ErrSchemaTooNew) {
		t.Fatalf("Open = %v, want ErrSchemaTooNew", err)
	}
	for _, w := range []string{path, fmt.Sprintf("schema version %d", store.SchemaVersion+1), fmt.Sprintf("only up to %d", store.SchemaVersion), "upgrade btfu"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

func TestErrorsNameThePath(t *testing.T) {
	dir := t.TempDir()
	notDB := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(notDB, []byte(strings.Repeat("not a database ", 100)), 0o600); err != nil {
		t.Fatal(err)
	}
	blocker := filepath.Join(dir, "file")
	if err := os.WriteFile(blocker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{notDB, filepath.Join(blocker, "btfu.db")} {
		_, err := sqlite.Open(t.Context(), path)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("Open(%s) = %v, want an error naming the path", path, err)
		}
	}
}

func TestOddPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a dir?x=1#frag%20", "btfu.db")
	st := open(t, path)
	if _, err := st.UpsertSource(t.Context(), store.Source{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("store not at %s: %v", path, err)
	}
	st = open(t, path)
	defer st.Close()
	if _, err := st.GetSource(t.Context(), "app"); err != nil {
		t.Error(err)
	}
}

package pgtest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestClusterStartsReadyForLogicalReplication(t *testing.T) {
	c, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if got := QueryValue[string](t, c, "postgres", "SHOW wal_level"); got != "logical" {
		t.Errorf("wal_level = %q, want logical", got)
	}
	db := c.CreateDB(t)
	c.Exec(t, db, "CREATE TABLE t(id int primary key); INSERT INTO t VALUES (1)")
	before := c.CurrentLSN(t)
	c.Exec(t, db, "INSERT INTO t VALUES (2)")
	if after := c.CurrentLSN(t); after <= before {
		t.Errorf("LSN did not advance: %s then %s", before, after)
	}
	if n := QueryValue[int64](t, c, db, "SELECT count(*) FROM t"); n != 2 {
		t.Errorf("count = %d", n)
	}
	if err := c.Restart(); err != nil {
		t.Fatal(err)
	}
	if n := QueryValue[int64](t, c, db, "SELECT count(*) FROM t"); n != 2 {
		t.Errorf("after restart count = %d", n)
	}
	base := c.BaseDir
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(base); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Stop", base)
	}
}

func TestWALLevelOption(t *testing.T) {
	c, err := Start(Options{WALLevel: "replica"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	if got := QueryValue[string](t, c, "postgres", "SHOW wal_level"); got != "replica" {
		t.Errorf("wal_level = %q, want replica", got)
	}
}

func TestCleanStaleRemovesDeadOwnersDirectories(t *testing.T) {
	dir, err := os.MkdirTemp("", dirPrefix)
	if err != nil {
		t.Fatal(err)
	}
	// PID 2^22+1 exceeds the default pid_max, so no process has it.
	if err := os.WriteFile(filepath.Join(dir, "owner.pid"), []byte("4194305"), 0o644); err != nil {
		t.Fatal(err)
	}
	cleanStale()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		os.RemoveAll(dir)
		t.Fatalf("stale dir %s survived", dir)
	}
}

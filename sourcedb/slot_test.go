package sourcedb_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/sourcedb"
)

var source *pgtest.Cluster

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &source)) }

func sourceFor(t *testing.T, db string) *config.Source {
	t.Helper()
	cfg, err := config.Parse("test.toml", []byte(fmt.Sprintf("[[source]]\nname = \"app\"\ndsn = %q\n", source.DSN(db))))
	if err != nil {
		t.Fatal(err)
	}
	return &cfg.Sources[0]
}

func slotCount(t *testing.T, slot string) int64 {
	t.Helper()
	return pgtest.QueryValue[int64](t, source, "postgres", `SELECT count(*) FROM pg_replication_slots WHERE slot_name = $1`, slot)
}

func TestReadSlotWALAndDropSlot(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := source.CreateDB(t)
	slot := "s_" + db
	source.Exec(t, db, `SELECT pg_create_logical_replication_slot($1, 'pgoutput')`, slot)
	t.Cleanup(func() {
		source.Exec(t, "postgres", `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot)
	})
	source.Exec(t, db, `CREATE TABLE t(id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 1000)`)
	conn := source.Connect(t, db)

	u, err := sourcedb.ReadSlotWAL(ctx, conn, slot)
	if err != nil {
		t.Fatal(err)
	}
	if !u.Exists || u.Retained <= 0 || u.WALStatus != "reserved" || u.SafeWALSize != -1 || u.ActivePID != 0 {
		t.Fatalf("ReadSlotWAL = %+v, want an existing, inactive, reserved slot retaining the WAL written since, no safe_wal_size", u)
	}
	pid, exists, err := sourcedb.SlotActivePID(ctx, conn, slot)
	if err != nil || !exists || pid != 0 {
		t.Fatalf("SlotActivePID = %d, %v, %v; want 0, true, nil", pid, exists, err)
	}

	if err := sourcedb.DropSlot(ctx, conn, slot); err != nil {
		t.Fatal(err)
	}
	if n := slotCount(t, slot); n != 0 {
		t.Fatalf("slot %s still exists after DropSlot", slot)
	}
	if u, err := sourcedb.ReadSlotWAL(ctx, conn, slot); err != nil || u.Exists || u.SafeWALSize != -1 {
		t.Fatalf("ReadSlotWAL of a dropped slot = %+v, %v; want no slot", u, err)
	}
	if _, exists, err := sourcedb.SlotActivePID(ctx, conn, slot); err != nil || exists {
		t.Fatalf("SlotActivePID of a dropped slot: exists %v, err %v", exists, err)
	}
	if err := sourcedb.DropSlot(ctx, conn, slot); err != nil {
		t.Fatalf("DropSlot of a missing slot: %v, want nil", err)
	}
}

// A slot a walsender streams from is not dropped; ending that walsender
// frees it (a temporary slot goes with its session).
func TestExportedSlotInUse(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db := source.CreateDB(t)
	src := sourceFor(t, db)
	slot := "s_" + db
	repl, err := sourcedb.ConnectReplication(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close(context.Background())
	s, err := sourcedb.CreateExportedSlot(ctx, repl, slot, true)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != slot || s.ConsistentPoint == 0 || s.Snapshot == "" {
		t.Fatalf("CreateExportedSlot = %+v", s)
	}
	conn := source.Connect(t, db)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SET TRANSACTION ISOLATION LEVEL REPEATABLE READ`); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `SET TRANSACTION SNAPSHOT '`+s.Snapshot+`'`); err != nil {
		t.Fatalf("import the exported snapshot: %v", err)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}

	pid, exists, err := sourcedb.SlotActivePID(ctx, conn, slot)
	if err != nil || !exists || pid != repl.PID() {
		t.Fatalf("SlotActivePID = %d, %v, %v; want the replication connection's %d", pid, exists, err, repl.PID())
	}
	if err := sourcedb.DropSlot(ctx, conn, slot); err == nil || !strings.Contains(err.Error(), "drop slot "+slot) {
		t.Fatalf("DropSlot of an active slot: %v, want a drop error naming it", err)
	}
	if n := slotCount(t, slot); n != 1 {
		t.Fatalf("active slot %s dropped", slot)
	}

	u, err := sourcedb.EndWalsender(ctx, conn, slot, pid, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if u.ActivePID != 0 || u.Exists {
		t.Fatalf("after EndWalsender the slot is %+v, want the temporary slot gone with its walsender", u)
	}
}

package sourcedb

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Replication slots on the source: creating one with an exported
// snapshot (DESIGN 1.2), reading what it retains (DESIGN 6.3), ending
// btfu's own walsender on it, and dropping it. Which slot may be dropped
// and whose backend ended is the caller's decision; a slot another
// session streams from is left alone.

// SlotWAL is what the source keeps for one slot.
type SlotWAL struct {
	Exists bool
	// Retained is the source's current WAL position minus the slot's
	// restart_lsn: the WAL it cannot remove.
	Retained int64
	// WALStatus is pg_replication_slots.wal_status: reserved, extended,
	// unreserved (about to be invalidated by max_slot_wal_keep_size) or
	// lost.
	WALStatus string
	// SafeWALSize is how much more WAL can be written before the server
	// invalidates the slot; -1 without max_slot_wal_keep_size.
	SafeWALSize int64
	ActivePID   uint32 // the backend streaming it, 0 when none
}

// ReadSlotWAL reads slot's row of pg_replication_slots; Exists is false
// without one.
func ReadSlotWAL(ctx context.Context, conn *pgx.Conn, slot string) (SlotWAL, error) {
	u := SlotWAL{Exists: true}
	var pid int64
	err := conn.QueryRow(ctx, `SELECT coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint,
		coalesce(wal_status, ''), coalesce(safe_wal_size, -1)::bigint, coalesce(active_pid, 0)::bigint
		FROM pg_replication_slots WHERE slot_name = $1`, slot).Scan(&u.Retained, &u.WALStatus, &u.SafeWALSize, &pid)
	if errors.Is(err, pgx.ErrNoRows) {
		return SlotWAL{SafeWALSize: -1}, nil
	}
	if err != nil {
		return SlotWAL{}, fmt.Errorf("read slot %s: %w", slot, err)
	}
	u.ActivePID = uint32(pid)
	return u, nil
}

// SlotActivePID looks for slot in the connection's database: exists is
// false without it, and pid is the backend streaming from it, 0 when
// none.
func SlotActivePID(ctx context.Context, conn *pgx.Conn, slot string) (pid uint32, exists bool, err error) {
	var active int64
	err = conn.QueryRow(ctx, `SELECT coalesce(active_pid, 0)::bigint FROM pg_replication_slots
		WHERE slot_name = $1 AND database = current_database()`, slot).Scan(&active)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("look for slot %s: %w", slot, err)
	}
	return uint32(active), true, nil
}

// DropSlot drops slot if it exists. It fails while a backend streams
// from the slot: callers check that it is free, or end their own
// walsender first (EndWalsender).
func DropSlot(ctx context.Context, conn *pgx.Conn, slot string) error {
	if _, err := conn.Exec(ctx, `SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1`, slot); err != nil {
		return fmt.Errorf("drop slot %s: %w", slot, err)
	}
	return nil
}

// EndWalsender terminates pid, the walsender streaming slot, and waits
// up to five seconds, reading the slot every poll, until no backend
// streams from it; it returns the slot as last read. pid must be a
// backend of btfu's own: btfu never terminates other sessions.
func EndWalsender(ctx context.Context, conn *pgx.Conn, slot string, pid uint32, poll time.Duration) (SlotWAL, error) {
	if _, err := conn.Exec(ctx, `SELECT pg_terminate_backend($1)`, int64(pid)); err != nil {
		return SlotWAL{}, fmt.Errorf("terminate btfu's own walsender %d on slot %s: %w", pid, slot, err)
	}
	u := SlotWAL{Exists: true, ActivePID: pid}
	for deadline := time.Now().Add(5 * time.Second); u.ActivePID != 0 && time.Now().Before(deadline); {
		time.Sleep(poll)
		var err error
		if u, err = ReadSlotWAL(ctx, conn, slot); err != nil {
			return SlotWAL{}, err
		}
	}
	return u, nil
}

// ExportedSlot is a logical slot just created with an exported snapshot.
type ExportedSlot struct {
	Name string
	// ConsistentPoint is the slot's C: a transaction whose commit starts
	// at or after it is in the stream, one before it in the snapshot.
	ConsistentPoint pglogrepl.LSN
	// Snapshot names the exported snapshot. It lives while the
	// replication connection stays open and idle.
	Snapshot string
}

// CreateExportedSlot creates the pgoutput slot name on the replication
// connection repl with EXPORT_SNAPSHOT (DESIGN 1.2); the server drops a
// temporary one when repl closes. On error Name is empty unless the slot
// was created and only its reply was unusable: the slot then exists and
// is the caller's to drop.
func CreateExportedSlot(ctx context.Context, repl *pgconn.PgConn, name string, temporary bool) (ExportedSlot, error) {
	res, err := pglogrepl.CreateReplicationSlot(ctx, repl, name, "pgoutput", pglogrepl.CreateReplicationSlotOptions{
		Temporary: temporary, SnapshotAction: "EXPORT_SNAPSHOT", Mode: pglogrepl.LogicalReplication})
	if err != nil {
		what := "replication slot"
		if temporary {
			what = "temporary slot"
		}
		return ExportedSlot{}, fmt.Errorf("create %s %s: %w", what, name, err)
	}
	s := ExportedSlot{Name: name, Snapshot: res.SnapshotName}
	if s.ConsistentPoint, err = pglogrepl.ParseLSN(res.ConsistentPoint); err != nil {
		return ExportedSlot{Name: name}, fmt.Errorf("slot %s: consistent point: %w", name, err)
	}
	return s, nil
}

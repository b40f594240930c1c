package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/internal/human"
	"github.com/btfu/btfu/notify/kind"
	"github.com/btfu/btfu/sourcedb"
	"github.com/btfu/btfu/store"
)

// The WAL guard (DESIGN 6.3, 6.6): the main slot may hold back at most
// max_retained_wal of WAL on the source, whatever capture is doing
// (streaming but stuck, failing, or stopped). At 75% btfu warns; past the
// budget it drops the slot, ends the chain recording the gap, and the
// next attempt takes a new base backup. A gap in the backups is better
// than a full disk on the source.

// WALWarnFraction of the budget is where the guard warns.
const WALWarnFraction = 0.75

// errOverBudget is the cause given to an attempt stopped by the guard.
var errOverBudget = errors.New("the slot retains more WAL than max_retained_wal")

// walBudget is the retained WAL the main slot may hold.
func (w *Worker) walBudget() int64 {
	if w.MaxRetainedWAL > 0 {
		return w.MaxRetainedWAL
	}
	return int64(w.Source.MaxRetainedWAL)
}

// checkWAL reads the main slot's retained WAL for the status, warns at
// WALWarnFraction of the budget, and past the budget stops the current
// attempt so Run drops the slot.
func (w *Worker) checkWAL(ctx context.Context) {
	conn, err := sourcedb.Connect(ctx, w.Source)
	if err != nil {
		return
	}
	defer conn.Close(context.WithoutCancel(ctx))
	u, err := sourcedb.ReadSlotWAL(ctx, conn, w.Source.Slot)
	if err != nil {
		return
	}
	budget := w.walBudget()
	w.mu.Lock()
	w.status.WALBudget = budget
	if !u.Exists {
		w.status.RetainedBytes, w.status.WALStatus, w.status.SafeWALSize = -1, "", -1
		w.mu.Unlock()
		return
	}
	w.status.RetainedBytes, w.status.WALStatus, w.status.SafeWALSize = u.Retained, u.WALStatus, u.SafeWALSize
	warn := u.Retained >= int64(float64(budget)*WALWarnFraction) && !w.walWarned
	if warn {
		w.walWarned = true
	} else if u.Retained < budget/2 {
		w.walWarned = false
	}
	over := u.Retained > budget && !w.dropDue
	if over {
		w.dropDue = true
	}
	cancel := w.cancelAttempt
	w.mu.Unlock()
	if warn && !over {
		msg := fmt.Sprintf("slot %s of source %s holds %s of WAL on the source, %.0f%% of max_retained_wal %s: past it btfu drops the slot (a gap in the backups, then a new base backup)",
			w.Source.Slot, w.Source.Name, human.Bytes(u.Retained), 100*float64(u.Retained)/float64(budget), human.Bytes(budget))
		w.Log.Warn(msg, "kind", string(kind.SlotWALWarning))
		w.notify(ctx, slog.LevelWarn, kind.SlotWALWarning, msg)
	}
	if over {
		w.Log.Warn("the slot retains more WAL than max_retained_wal; stopping capture to drop it", "retained", human.Bytes(u.Retained), "budget", human.Bytes(budget))
		if cancel != nil {
			cancel(errOverBudget)
		}
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// ownPID reports whether pid is the backend of a replication connection
// this worker opened.
func (w *Worker) ownPID(pid uint32) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pids[pid]
}

// dropOverBudget drops the main slot when it still retains more than the
// budget, ends the open chain recording the gap and says so. It runs
// between attempts, so no connection of this worker streams the slot; a
// walsender of its own that has not exited yet is terminated, any other
// session's never is. why says what capture was doing meanwhile.
func (w *Worker) dropOverBudget(ctx context.Context, why string) error {
	conn, err := sourcedb.Connect(ctx, w.Source)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	slot, budget := w.Source.Slot, w.walBudget()
	u, err := sourcedb.ReadSlotWAL(ctx, conn, slot)
	if err != nil {
		return err
	}
	if !u.Exists {
		// A first base backup stopped by the guard drops its slot itself.
		return w.endChainForBudget(ctx, 0, budget, why)
	}
	if u.Retained <= budget {
		return nil
	}
	for deadline := time.Now().Add(5 * time.Second); u.ActivePID != 0 && time.Now().Before(deadline); {
		if !w.ownPID(u.ActivePID) {
			break
		}
		time.Sleep(100 * time.Millisecond) // our walsender exits once it sees the connection closed
		if u, err = sourcedb.ReadSlotWAL(ctx, conn, slot); err != nil {
			return err
		}
	}
	if u.ActivePID != 0 {
		if !w.ownPID(u.ActivePID) {
			msg := fmt.Sprintf("slot %s of source %s retains %s of WAL, over max_retained_wal %s, but backend PID %d (not btfu's connection) is using it: not dropped, since btfu never terminates other sessions; stop what uses the slot",
				slot, w.Source.Name, human.Bytes(u.Retained), human.Bytes(budget), u.ActivePID)
			w.notify(ctx, slog.LevelError, kind.SlotInUse, msg)
			return errors.New(msg)
		}
		if u, err = sourcedb.EndWalsender(ctx, conn, slot, u.ActivePID, 100*time.Millisecond); err != nil {
			return err
		}
	}
	if err := sourcedb.DropSlot(ctx, conn, slot); err != nil {
		return err
	}
	w.setStatus(func(s *Status) { s.RetainedBytes, s.WALStatus, s.SafeWALSize = -1, "", -1 })
	return w.endChainForBudget(ctx, u.Retained, budget, why)
}

// endChainForBudget ends the source's open chain (the slot was dropped
// for retaining retained bytes, 0 when unknown) and emits slot.dropped.
func (w *Worker) endChainForBudget(ctx context.Context, retained, budget int64, why string) error {
	held := "more WAL than"
	if retained > 0 {
		held = human.Bytes(retained) + " of WAL, over"
	}
	reason := fmt.Sprintf("slot dropped: it retained %s max_retained_wal %s (%s); changes from here to the next base backup are not backed up", held, human.Bytes(budget), why)
	chains, err := w.Meta.ListChains(ctx, w.SourceID)
	if err != nil {
		return err
	}
	ended := false
	for _, ch := range chains {
		if ch.EndedAt.IsZero() {
			if err := w.Meta.EndChain(ctx, ch.ID, time.Now(), reason); err != nil {
				return err
			}
			ended = true
		}
	}
	msg := fmt.Sprintf("source %s: slot %s %s; a new base backup starts the next chain once capture works", w.Source.Name, w.Source.Slot, reason)
	if !ended && retained == 0 {
		msg = fmt.Sprintf("source %s: the base backup was stopped and its slot %s dropped: it retained %s max_retained_wal %s (%s)", w.Source.Name, w.Source.Slot, held, human.Bytes(budget), why)
	}
	w.Log.Error(msg, "kind", string(kind.SlotDropped))
	w.notify(ctx, slog.LevelError, kind.SlotDropped, msg)
	return nil
}

// reportAtStart says how much WAL the main slot held while capture was
// stopped and, past the budget, drops it before anything else.
func (w *Worker) reportAtStart(ctx context.Context) {
	chains, err := w.Meta.ListChains(ctx, w.SourceID)
	if err != nil {
		return
	}
	var open *store.Chain
	for i := range chains {
		if chains[i].EndedAt.IsZero() {
			open = &chains[i]
		}
	}
	if open == nil {
		return
	}
	conn, err := sourcedb.Connect(ctx, w.Source)
	if err != nil {
		return
	}
	u, err := sourcedb.ReadSlotWAL(ctx, conn, w.Source.Slot)
	conn.Close(context.WithoutCancel(ctx))
	if err != nil || !u.Exists {
		return
	}
	budget := w.walBudget()
	since := "since it last ran"
	if !open.CursorTime.IsZero() {
		since = "since " + open.CursorTime.UTC().Format(time.RFC3339)
	}
	level := slog.LevelInfo
	if u.Retained >= int64(float64(budget)*WALWarnFraction) {
		level = slog.LevelWarn
	}
	msg := fmt.Sprintf("slot %s of source %s held %s of WAL on the source while capture was stopped (stored cursor %s, %s; max_retained_wal %s)",
		w.Source.Slot, w.Source.Name, human.Bytes(u.Retained), open.CursorLSN, since, human.Bytes(budget))
	w.Log.Log(ctx, level, msg, "kind", string(kind.SlotWALAtStart))
	w.notify(ctx, level, kind.SlotWALAtStart, msg)
	w.setStatus(func(s *Status) {
		s.RetainedBytes, s.WALStatus, s.SafeWALSize, s.WALBudget = u.Retained, u.WALStatus, u.SafeWALSize, budget
	})
	if u.Retained > budget {
		if err := w.dropOverBudget(ctx, "while btfu was stopped"); err != nil {
			w.Log.Error("could not drop the slot past max_retained_wal", "err", err)
		}
	}
}

func (w *Worker) setCancelAttempt(cancel context.CancelCauseFunc) {
	w.mu.Lock()
	w.cancelAttempt = cancel
	w.mu.Unlock()
}

// takeDropDue reports (and forgets) that the guard found the slot over
// its budget.
func (w *Worker) takeDropDue() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	due := w.dropDue
	w.dropDue = false
	return due
}

// describe says what capture was doing, for the chain's end reason.
func (w *Worker) describe() string {
	w.mu.Lock()
	f, stuck, st := w.lastFail, w.stuck, w.status
	w.mu.Unlock()
	switch {
	case f != nil && stuck:
		return "capture stuck: " + f.Category + " failure at " + f.LSN.String() + ": " + f.Message
	case f != nil:
		return "capture failing: " + f.Category + " failure at " + f.LSN.String() + ": " + f.Message
	case st.LastError != "":
		return "capture " + st.State + ": " + st.LastError
	}
	return "capture " + orStarting(st.State) + " but the slot's restart_lsn did not move"
}

// releaseSlot ends a walsender of this worker's that still holds the
// main slot (its connection went silent and the server has not noticed
// yet: it would hold the slot until wal_sender_timeout), so the stream
// starts again at once. Other sessions' backends are never terminated.
func (w *Worker) releaseSlot(ctx context.Context, conn *pgx.Conn, current uint32) error {
	u, err := sourcedb.ReadSlotWAL(ctx, conn, w.Source.Slot)
	if err != nil || u.ActivePID == 0 || u.ActivePID == current || !w.ownPID(u.ActivePID) {
		return err
	}
	w.Log.Info("ending btfu's own earlier walsender, which still holds the slot", "pid", u.ActivePID)
	_, err = sourcedb.EndWalsender(ctx, conn, w.Source.Slot, u.ActivePID, 50*time.Millisecond)
	return err
}

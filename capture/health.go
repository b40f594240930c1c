package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/btfu/btfu/notify/kind"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/stream"
)

// Failure categories: Status.Error.Category, and the label of
// btfu_capture_errors_total.
const (
	CatConnection  = "connection"  // the source could not be reached, or the connection broke or went silent
	CatAuth        = "auth"        // the source refused btfu's role or password
	CatPublication = "publication" // the publication is missing
	CatSlot        = "slot"        // the slot is gone or lost (the chain ends)
	CatSource      = "source"      // another error the server sent
	CatDecode      = "decode"      // a message of the stream could not be handled
	CatStore       = "store"       // a segment could not be stored or recorded
	CatBaseBackup  = "base_backup" // the base backup a new chain needs failed
	CatCapture     = "capture"     // anything else
)

// Failure is what keeps capture from progressing: the same failure met
// again, at the same position, with nothing stored in between.
type Failure struct {
	Category string     `json:"category"`
	LSN      stream.LSN `json:"-"`
	Message  string     `json:"message"`
	Since    time.Time  `json:"since"`    // the first of the attempts that met it
	Attempts int        `json:"attempts"` // attempts that met it
}

// String is the failure as btfu status and the TUI show it.
func (f *Failure) String() string {
	s := fmt.Sprintf("%s failure at %s, %d attempts since %s: %s", f.Category, f.LSN, f.Attempts, f.Since.UTC().Format("2006-01-02 15:04:05Z"), f.Message)
	if h := hint(f.Category); h != "" {
		s += " (" + h + ")"
	}
	return s
}

func hint(category string) string {
	switch category {
	case CatStore:
		return "check the storage in config.toml: space, permissions, credentials; btfu retries and resumes from the stored cursor"
	case CatPublication:
		return "create the publication again with 'btfu register'; before PostgreSQL 18 the slot cannot decode changes written while it was missing, so if this goes on, 'btfu unregister' and register again (a gap, then a new base backup)"
	case CatAuth:
		return "check the source's user and password (dsn, password_file)"
	case CatDecode:
		return "btfu cannot handle this message of the stream; please report it with the log lines around it"
	case CatBaseBackup:
		return "see the base backup's error; btfu retries"
	}
	return ""
}

// backupError marks a failure of the base backup a new chain needs.
type backupError struct{ error }

func (e backupError) Unwrap() error { return e.error }

// category names the kind of a failed attempt.
func category(err error) string {
	var pgErr *pgconn.PgError
	var me *stream.MessageError
	var be backupError
	switch {
	case isStoreError(err):
		return CatStore
	case errors.Is(err, stream.ErrSlotGone):
		return CatSlot
	case errors.As(err, &pgErr):
		switch {
		case strings.HasPrefix(pgErr.Code, "28"):
			return CatAuth
		case pgErr.Code == "42704" && strings.Contains(pgErr.Message, "publication"):
			return CatPublication
		case strings.HasPrefix(pgErr.Code, "57P") || strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "53300" || pgErr.Code == "55006":
			// Shutdown, restart, connection refused by the server, too
			// many connections, the slot still held by a walsender of an
			// earlier connection: passing, as far as btfu can tell.
			return CatConnection
		}
		if errors.As(err, &be) {
			return CatBaseBackup
		}
		return CatSource
	case stream.Disconnected(err):
		return CatConnection
	case errors.As(err, &me):
		return CatDecode
	case errors.As(err, &be):
		return CatBaseBackup
	}
	return CatCapture
}

// failed records a failed attempt: it counts it, and decides whether
// capture is stuck (the same kind of failure again with no progress since
// the last one; losing the connection never counts) or only reconnecting.
// It sets the state accordingly and returns whether it is stuck.
func (w *Worker) failed(ctx context.Context, err error) bool {
	cat := category(err)
	msg := err.Error()
	var me *stream.MessageError
	now := time.Now()
	w.mu.Lock()
	if w.status.Errors == nil {
		w.status.Errors = map[string]int64{}
	}
	w.status.Errors[cat]++
	lsn := w.status.FlushedLSN
	if errors.As(err, &me) {
		lsn = me.LSN
	}
	newlyStuck := false
	if cat != CatConnection {
		if f := w.lastFail; f != nil && f.Category == cat {
			f.LSN, f.Message, f.Attempts = lsn, msg, f.Attempts+1
			newlyStuck = !w.stuck
			w.stuck = true
		} else {
			w.lastFail = &Failure{Category: cat, LSN: lsn, Message: msg, Since: now, Attempts: 1}
		}
	}
	stuck, f := w.stuck, w.lastFail
	var shown Failure
	if stuck {
		shown = *f
		w.status.Error = &shown
	}
	w.mu.Unlock()
	if !stuck {
		w.setState(ctx, store.StateReconnecting, msg)
		return false
	}
	w.setState(ctx, store.StateError, shown.String())
	if newlyStuck {
		w.Log.Error("capture cannot progress", "category", shown.Category, "lsn", shown.LSN.String(), "attempts", shown.Attempts, "err", err)
		w.notify(ctx, slog.LevelError, kind.CaptureError, fmt.Sprintf("capture of %s cannot progress: %s", w.Source.Name, shown.String()))
	}
	return true
}

// progress records that capture moved on (a segment stored, the stream
// caught up with the source, a base backup stored): a stuck capture is
// streaming again, and the next failure starts the backoff afresh.
func (w *Worker) progress(ctx context.Context) {
	w.mu.Lock()
	w.progressed = true
	wasStuck, f := w.stuck, w.lastFail
	w.stuck, w.lastFail, w.status.Error = false, nil, nil
	state := w.status.State
	w.mu.Unlock()
	if wasStuck {
		w.Log.Info("capture progresses again", "category", f.Category, "after_attempts", f.Attempts)
		w.notify(ctx, slog.LevelInfo, kind.CaptureRecovered, fmt.Sprintf("capture of %s progresses again after %d failed attempts (%s failure since %s)", w.Source.Name, f.Attempts, f.Category, f.Since.UTC().Format(time.RFC3339)))
	}
	if state == store.StateError || state == store.StateReconnecting {
		w.setState(ctx, store.StateStreaming, "")
	}
}

// tookProgress reports (and forgets) whether capture progressed since
// the last call.
func (w *Worker) tookProgress() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	p := w.progressed
	w.progressed = false
	return p
}

// setRunning sets the state of an attempt (backing_up, streaming) unless
// capture is stuck: then it stays error until progress.
func (w *Worker) setRunning(ctx context.Context, state string) {
	w.mu.Lock()
	stuck := w.stuck
	w.mu.Unlock()
	if !stuck {
		w.setState(ctx, state, "")
	}
}

// Package capture runs one source: it makes sure a chain with a base
// backup exists, streams the slot into stored segments, and acknowledges
// the slot only after a segment is stored and recorded. Lost connections
// are retried with capped exponential backoff and resume from the durable
// cursor; a lost slot ends the chain and a new base backup starts the next.
package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/btfu/btfu/backup"
	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/notify/kind"
	"github.com/btfu/btfu/segment"
	"github.com/btfu/btfu/sourcedb"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/stream"
)

// Worker captures one source until its context ends.
type Worker struct {
	Source    *config.Source
	SourceID  int64
	Meta      store.Store
	Artifacts artifact.Store
	Log       *slog.Logger
	// SpoolDir holds segments being written and large transactions; it
	// must be on local disk. A subdirectory per source is created.
	SpoolDir string
	// Backoff bounds for reconnecting; defaults 250ms and 30s. The
	// backoff doubles from MinBackoff while attempts fail without
	// progress, and starts again from MinBackoff once one makes some.
	MinBackoff, MaxBackoff time.Duration
	// SequenceInterval is how often sequences are snapshotted; default 10s.
	SequenceInterval time.Duration
	// StatusInterval is the receiver's standby status interval; default 1s.
	StatusInterval time.Duration
	// SilenceTimeout is the receiver's: no message for this long after a
	// reply was requested means a dead connection; default 10s. After
	// each silence met with no progress the next attempt waits twice as
	// long (up to 5 minutes), so a server busy in one huge transaction is
	// not reconnected to forever.
	SilenceTimeout time.Duration
	// MaxRetainedWAL, when set, replaces the source's max_retained_wal
	// (tests).
	MaxRetainedWAL int64

	// AfterBackup, if set, runs after each successful base backup
	// (retention).
	AfterBackup func(ctx context.Context, b store.BaseBackup)
	// Notify, if set, receives events the user should see (tables added
	// to the publication, tables that could not be).
	Notify func(ctx context.Context, level slog.Level, k kind.Kind, msg string)
	// BackupOnStart, when not empty, says why a base backup is due as soon
	// as the worker streams (tables added while btfu was not running).
	BackupOnStart string

	mu     sync.Mutex
	status Status
	warned map[string]bool  // tables already reported as not addable
	bg     sync.WaitGroup   // base backups started by the worker itself
	rcv    *stream.Receiver // the current stream, for the server's WAL end
	// backupDue, when set, says why a base backup should start soon
	// (tables joined); lastJoinedBackup is when the last such one started
	// (or failed: it is tried again an interval later).
	backupDue        string
	lastJoinedBackup time.Time
	backupMu         sync.Mutex
	// coverageMu orders the table coverage records of the stream (what
	// the capture trigger did) and of the new-tables check.
	coverageMu sync.Mutex

	// What failed and whether capture is stuck (health.go).
	lastFail   *Failure
	stuck      bool
	progressed bool
	silence    time.Duration // the receiver's silence timeout for the next attempt
	// The WAL guard (walguard.go).
	walWarned     bool
	dropDue       bool
	cancelAttempt context.CancelCauseFunc
	wake          chan struct{}
	pids          map[uint32]bool // backends of this worker's replication connections
}

// Status is a worker's state, for the engine's status snapshots.
type Status struct {
	State      string // starting, backing_up, streaming, reconnecting, error, stopped
	ChainID    int64
	FlushedLSN stream.LSN
	FlushedAt  time.Time
	LastError  string
	Segments   int64      // stored by this run
	SourceLSN  stream.LSN // the source's WAL position at the last sequence snapshot
	SourceAt   time.Time
	BackingUp  bool // a scheduled or on-demand base backup is running
	// Received counts transactions and their uncompressed bytes written
	// to segments by this run (stored or about to be): throughput.
	Transactions  int64
	ReceivedBytes int64
	StoredBytes   int64 // compressed bytes of the segments stored by this run
	// RetainedBytes is the WAL the source keeps for the main slot
	// (current WAL position minus the slot's restart_lsn), -1 if unknown.
	RetainedBytes int64
	// WALStatus and SafeWALSize are the slot's (pg_replication_slots;
	// SafeWALSize -1 when max_slot_wal_keep_size is unlimited); WALBudget
	// is max_retained_wal, past which the slot is dropped.
	WALStatus   string
	SafeWALSize int64
	WALBudget   int64
	// Error is set while capture is stuck (State "error").
	Error *Failure
	// Errors counts failed attempts by category since the worker started.
	Errors map[string]int64
}

// Status returns the current status.
func (w *Worker) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.status
	if st.Error != nil {
		f := *st.Error
		st.Error = &f
	}
	st.Errors = maps.Clone(st.Errors)
	if w.rcv != nil {
		if end := w.rcv.ServerWALEnd(); end > st.SourceLSN {
			st.SourceLSN, st.SourceAt = end, time.Now()
		}
	}
	return st
}

func (w *Worker) setStatus(f func(*Status)) {
	w.mu.Lock()
	f(&w.status)
	w.mu.Unlock()
}

func (w *Worker) setState(ctx context.Context, state, lastError string) {
	w.setStatus(func(s *Status) { s.State, s.LastError = state, lastError })
	if err := w.Meta.SetSourceState(context.WithoutCancel(ctx), w.SourceID, state, lastError); err != nil {
		w.Log.Warn("could not record source state", "err", err)
	}
}

// Run captures until ctx ends; it returns nil on a clean stop.
func (w *Worker) Run(ctx context.Context) error {
	if w.MinBackoff == 0 {
		w.MinBackoff = 250 * time.Millisecond
	}
	if w.SilenceTimeout == 0 {
		w.SilenceTimeout = stream.DefaultSilenceTimeout
	}
	w.silence, w.wake, w.pids = w.SilenceTimeout, make(chan struct{}, 1), map[uint32]bool{}
	if w.MaxBackoff == 0 {
		w.MaxBackoff = 30 * time.Second
	}
	if w.SequenceInterval == 0 {
		w.SequenceInterval = 10 * time.Second
	}
	w.Log = w.Log.With("source", w.Source.Name)
	w.cleanUpInterrupted(ctx)
	w.reportAtStart(ctx)
	sp, err := makeSpool(w.SpoolDir, w.Source.Name)
	if err != nil {
		return err
	}
	defer sp.release()
	spool := sp.path

	seqDone := make(chan struct{})
	seqCtx, stopSeq := context.WithCancel(ctx)
	go func() { defer close(seqDone); w.sequences(seqCtx) }()
	defer func() {
		stopSeq()
		<-seqDone
		w.bg.Wait()
		// A last sequence snapshot at clean shutdown.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if _, err := backup.SnapshotSequences(sctx, w.Source, w.SourceID, w.Meta); err != nil {
			w.Log.Warn("sequence snapshot at shutdown failed", "err", err)
		}
	}()

	if w.BackupOnStart != "" {
		w.bg.Add(1)
		go func() {
			defer w.bg.Done()
			t := time.NewTicker(100 * time.Millisecond)
			defer t.Stop()
			for w.Status().State != store.StateStreaming {
				select {
				case <-seqCtx.Done():
					return
				case <-t.C:
				}
			}
			w.mu.Lock()
			w.lastJoinedBackup = time.Now()
			w.mu.Unlock()
			w.backupSoon(seqCtx, w.BackupOnStart)
		}()
	}

	backoff := w.MinBackoff
	for {
		if w.takeDropDue() {
			if err := w.dropOverBudget(ctx, w.describe()); err != nil && ctx.Err() == nil {
				w.Log.Error("could not drop the slot past max_retained_wal", "err", err)
			}
		}
		// An attempt the WAL guard can stop.
		actx, cancel := context.WithCancelCause(ctx)
		w.setCancelAttempt(cancel)
		// A temporary-file cleaner may have removed the directory
		// while btfu ran: make it again rather than fail forever.
		err := sp.ensure()
		if err == nil {
			err = w.runOnce(actx, spool)
		}
		w.setCancelAttempt(nil)
		cancel(nil)
		if ctx.Err() != nil {
			w.setState(ctx, store.StateStopped, "")
			return nil
		}
		if cause := context.Cause(actx); errors.Is(cause, errOverBudget) {
			w.Log.Warn("capture stopped by the WAL guard", "err", err)
			continue // the slot is dropped at the top of the loop
		}
		if err == nil {
			err = errors.New("capture stopped")
		}
		if w.tookProgress() {
			backoff, w.silence = w.MinBackoff, w.SilenceTimeout
		} else if errors.Is(err, stream.ErrSilent) {
			w.silence = min(2*w.silence, 5*time.Minute)
		}
		stuck := w.failed(ctx, err)
		w.Log.Warn("capture interrupted; retrying", "err", err, "in", backoff.String(), "category", category(err), "stuck", stuck)
		select {
		case <-ctx.Done():
			w.setState(ctx, store.StateStopped, "")
			return nil
		case <-time.After(backoff):
		case <-w.wake:
		}
		backoff = min(backoff*2, w.MaxBackoff)
	}
}

// cleanUpInterrupted marks base backups left running by a btfu that died
// as failed, and removes spool directories it left behind.
func (w *Worker) cleanUpInterrupted(ctx context.Context) {
	bases, err := w.Meta.ListBaseBackups(ctx, w.SourceID)
	if err != nil {
		w.Log.Warn("could not list base backups", "err", err)
	}
	for _, b := range bases {
		if b.Status == store.BackupRunning {
			b.Status, b.Error, b.FinishedAt = store.BackupFailed, "interrupted: btfu stopped during the base backup", time.Now()
			if err := w.Meta.UpdateBaseBackup(ctx, b); err != nil {
				w.Log.Warn("could not mark an interrupted base backup failed", "id", b.ID, "err", err)
			}
			if b.ArtifactKey != "" {
				_ = w.Artifacts.Delete(ctx, b.ArtifactKey)
			}
		}
	}
	for _, d := range removeLeftSpools(w.SpoolDir, w.Source.Name) {
		w.Log.Info("removed a spool directory left by a stopped btfu", "dir", d)
	}
}

// openChain returns the source's open chain with a complete base backup,
// taking the first base backup (which creates the slot and the chain)
// when there is none.
func (w *Worker) openChain(ctx context.Context) (store.Chain, error) {
	chains, err := w.Meta.ListChains(ctx, w.SourceID)
	if err != nil {
		return store.Chain{}, err
	}
	for _, ch := range chains {
		if ch.EndedAt.IsZero() {
			bases, err := w.Meta.ListBaseBackups(ctx, w.SourceID)
			if err != nil {
				return store.Chain{}, err
			}
			for _, b := range bases {
				if b.ChainID == ch.ID && b.Status == store.BackupComplete {
					return ch, nil
				}
			}
			// An open chain without a complete base (btfu stopped during
			// its first base backup) cannot be restored from: drop its
			// slot, which only holds WAL, end it and start over.
			if err := backup.DropSlot(ctx, w.Source, ch.SlotName); err != nil {
				return store.Chain{}, fmt.Errorf("drop slot %s of a chain without base backup: %w", ch.SlotName, err)
			}
			if err := w.Meta.EndChain(ctx, ch.ID, time.Now(), "no complete base backup (interrupted)"); err != nil {
				return store.Chain{}, err
			}
		}
	}
	if err := w.dropOrphanSlot(ctx); err != nil {
		return store.Chain{}, err
	}
	w.setRunning(ctx, store.StateBackingUp)
	w.Log.Info("taking the first base backup of a new chain")
	b, err := backup.Take(ctx, backup.Request{Source: w.Source, SourceID: w.SourceID, Meta: w.Meta, Artifacts: w.Artifacts, Log: w.Log, Main: true})
	if err != nil {
		return store.Chain{}, backupError{err}
	}
	w.progress(ctx)
	if w.AfterBackup != nil {
		w.AfterBackup(ctx, b)
	}
	chains, err = w.Meta.ListChains(ctx, w.SourceID)
	if err != nil {
		return store.Chain{}, err
	}
	for _, ch := range chains {
		if ch.ID == b.ChainID {
			return ch, nil
		}
	}
	return store.Chain{}, fmt.Errorf("chain %d of the new base backup not found", b.ChainID)
}

// dropOrphanSlot drops the source's main slot when it exists while no
// open chain uses it: a first base backup that was interrupted (kill -9, a
// crash, a lost connection) after creating the slot and before recording
// its chain left it. It holds WAL for nothing, and the next first base
// backup could not create it again ("already exists") for ever. A slot
// someone streams from is left alone, and the error says who.
func (w *Worker) dropOrphanSlot(ctx context.Context) error {
	conn, err := sourcedb.Connect(ctx, w.Source)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	active, exists, err := sourcedb.SlotActivePID(ctx, conn, w.Source.Slot)
	if err != nil || !exists {
		return err
	}
	if active != 0 {
		return fmt.Errorf("slot %s exists with no chain of btfu's using it, and process %d streams from it: stop that client (or drop the slot if it is a stale btfu's), or set slot = \"another_name\" for source %s", w.Source.Slot, active, w.Source.Name)
	}
	w.Log.Warn("dropping slot left by an interrupted first base backup (no chain uses it)", "slot", w.Source.Slot)
	if err := sourcedb.DropSlot(ctx, conn, w.Source.Slot); err != nil {
		return fmt.Errorf("%w (a slot left by an interrupted first base backup)", err)
	}
	return nil
}

// session is one streaming connection of a chain: what connect opened
// and wire built.
type session struct {
	chain    store.Chain
	side     *pgx.Conn        // queries beside the stream (type names, the slot)
	repl     *pgconn.PgConn   // the replication connection
	catchUp  stream.LSN       // the source's WAL position at connect: reaching it is progress (health.go)
	caughtUp bool             // the stream has reached catchUp once (its backlog is then stored at once)
	rcv      *stream.Receiver // the pgoutput receiver on repl
	seg      *segmenter       // transactions into segments, and the checkpoint
	events   chan stream.Event
}

// runOnce takes a chain to stream (with a base backup if needed) and
// streams until an error or ctx ends: connect, wire, run, drain.
func (w *Worker) runOnce(ctx context.Context, spool string) error {
	chain, err := w.openChain(ctx)
	if err != nil {
		return err
	}
	ss, err := w.connect(ctx, chain)
	if ss != nil {
		defer ss.side.Close(context.WithoutCancel(ctx))
		if ss.repl != nil {
			defer ss.repl.Close(context.WithoutCancel(ctx))
		}
	}
	if err != nil {
		return err
	}
	if err := w.wire(ctx, ss, spool); err != nil {
		return err
	}
	defer func() {
		w.mu.Lock()
		w.rcv = nil
		w.mu.Unlock()
	}()
	rctx, stopRcv := context.WithCancel(ctx)
	defer stopRcv()
	rcvErr := make(chan error, 1)
	go func() { rcvErr <- ss.rcv.Run(rctx, ss.events) }()
	runErr, received := w.run(ctx, ss, rcvErr)
	// Stop receiving, then store what was received whole (drain).
	stopRcv()
	if !received {
		<-rcvErr
	}
	return w.drain(ctx, ss, runErr)
}

// connect opens the connection beside the stream and the replication
// connection, and takes the slot from an earlier walsender of btfu's.
// The caller closes what it returns, also on error.
func (w *Worker) connect(ctx context.Context, chain store.Chain) (*session, error) {
	side, err := sourcedb.Connect(ctx, w.Source)
	if err != nil {
		return nil, err
	}
	ss := &session{chain: chain, side: side}
	if err := side.QueryRow(ctx, "SELECT pg_current_wal_lsn()").Scan(&ss.catchUp); err != nil {
		return ss, fmt.Errorf("read the source's WAL position: %w", err)
	}
	ss.repl, err = sourcedb.ConnectReplication(ctx, w.Source)
	if err != nil {
		return ss, err
	}
	w.mu.Lock()
	w.pids[ss.repl.PID()] = true
	w.mu.Unlock()
	return ss, w.releaseSlot(ctx, side, ss.repl.PID())
}

// wire builds the receiver from the chain's cursor and the segmenter that
// continues the chain's last stored segment.
func (w *Worker) wire(ctx context.Context, ss *session, spool string) error {
	chain := ss.chain
	prevEnd := chain.StartLSN
	segs, err := w.Meta.ListSegments(ctx, w.SourceID, 0)
	if err != nil {
		return err
	}
	for _, s := range segs {
		if s.ChainID == chain.ID && s.EndLSN > prevEnd {
			prevEnd = s.EndLSN
		}
	}
	var versionNum int
	if err := ss.side.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&versionNum); err != nil {
		return fmt.Errorf("read server version: %w", err)
	}
	w.mu.Lock()
	silence := w.silence
	w.mu.Unlock()
	side := ss.side
	cfg := stream.Config{
		Slot: w.Source.Slot, Publication: w.Source.Publication, ProtoVersion: 1,
		StartLSN: chain.CursorLSN, SpoolDir: spool, StatusInterval: w.StatusInterval, SilenceTimeout: silence,
		TypeName: func(ctx context.Context, oid uint32, typmod int32) (string, error) {
			var n string
			err := side.QueryRow(ctx, "SELECT format_type($1, $2)", oid, typmod).Scan(&n)
			return n, err
		},
	}
	if versionNum >= 140000 {
		cfg.ProtoVersion, cfg.Streaming = 2, true
	}
	ss.rcv = stream.New(ss.repl, cfg)
	w.mu.Lock()
	w.rcv = ss.rcv
	w.mu.Unlock()
	ss.seg = &segmenter{
		source: w.Source.Name, sourceID: w.SourceID, chain: chain, meta: w.Meta, artifacts: w.Artifacts,
		spoolDir: spool, maxSize: int64(w.Source.SegmentMaxSize), maxAge: w.Source.SegmentMaxAge.D(),
		cp: &checkpoint{meta: w.Meta, chainID: chain.ID, ack: ss.rcv.Ack, cursor: chain.CursorLSN}, prevEnd: prevEnd,
		onStored: func(s store.Segment) {
			w.setStatus(func(st *Status) {
				st.Segments++
				st.StoredBytes += s.StoredBytes
				st.FlushedLSN, st.FlushedAt = s.EndLSN, s.LastCommitAt
			})
			w.progress(context.WithoutCancel(ctx))
		},
		onAdded: func(n int64) {
			w.setStatus(func(st *Status) { st.Transactions++; st.ReceivedBytes += n })
		},
	}
	ss.events = make(chan stream.Event, 256)
	w.setStatus(func(s *Status) { s.ChainID, s.FlushedLSN, s.FlushedAt = chain.ID, chain.CursorLSN, chain.CursorTime })
	w.setRunning(ctx, store.StateStreaming)
	w.Log.Info("streaming", "chain", chain.ID, "from", chain.CursorLSN.String(), "protocol", cfg.ProtoVersion)
	return nil
}

// run handles the receiver's events and stores due segments until an
// error or the receiver stops (received: its result was taken; it stops
// when ctx ends).
func (w *Worker) run(ctx context.Context, ss *session, rcvErr <-chan error) (runErr error, received bool) {
	seg := ss.seg
	// A tenth of segment_max_age (at most 100ms): a segment is stored at
	// most that late after it is due, which the RPO counts.
	tick := time.NewTicker(min(100*time.Millisecond, w.Source.SegmentMaxAge.D()/10))
	defer tick.Stop()
	// Storing and recording are not cut short by shutdown: a segment that
	// is being stored is finished, then acknowledged.
	storeCtx := context.WithoutCancel(ctx)
	for {
		select {
		case ev := <-ss.events:
			if err := w.handle(storeCtx, seg, ev); err != nil {
				return err, false
			}
			if ev.Idle && ev.WALEnd >= ss.catchUp {
				// The backlog that built up while btfu was not streaming
				// (a restart, a resume, a lost connection) is stored as soon
				// as it has all arrived, not segment_max_age after its
				// segment opened. Once per connection, so a steady stream
				// afterwards makes no more segments than the age allows.
				if !ss.caughtUp && seg.w != nil {
					if err := seg.flush(storeCtx); err != nil {
						return storeError{err}, false
					}
				}
				ss.caughtUp = true
				// Caught up with nothing left to store is progress; a
				// segment still being stored counts once it is (onStored).
				if !seg.pending() {
					w.progress(storeCtx)
				}
			}
		case res := <-seg.results:
			if err := seg.apply(storeCtx, res); err != nil {
				return storeError{err}, false
			}
		case <-tick.C:
			if seg.due() {
				if err := seg.flush(storeCtx); err != nil {
					return storeError{err}, false
				}
			}
			w.setStatus(func(s *Status) {
				if s.FlushedLSN < seg.cp.cursor {
					s.FlushedLSN = seg.cp.cursor
				}
			})
		case err := <-rcvErr:
			// The receiver stops with ctx too (context.Canceled).
			return err, true
		}
	}
}

// drain stores what was received whole once the receiver has stopped: the
// open segment and any transaction already handed over. They are
// complete, so nothing is lost by keeping them, and the cursor moves past
// them. A lost slot ends the chain.
func (w *Worker) drain(ctx context.Context, ss *session, runErr error) error {
	seg, events := ss.seg, ss.events
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if runErr == nil || ctx.Err() != nil || !isStoreError(runErr) {
	drain:
		for {
			select {
			case ev := <-events:
				if err := w.handle(drainCtx, seg, ev); err != nil {
					w.Log.Error("could not store received transactions", "err", err)
					break drain
				}
			default:
				break drain
			}
		}
		err := seg.flush(drainCtx)
		if err == nil {
			err = seg.wait(drainCtx)
		}
		if err != nil {
			w.Log.Error("could not store the last segments; they will be received again", "err", err)
		} else if err := ss.rcv.SendStatus(drainCtx); err == nil {
			w.Log.Debug("acknowledged on stop", "lsn", ss.rcv.Acked().String())
		}
	}
	seg.discard()
	for len(events) > 0 { // the receiver has stopped: release what is left
		if ev := <-events; ev.Tx != nil {
			ev.Tx.Release()
		}
	}
	if errors.Is(runErr, stream.ErrSlotGone) {
		w.Log.Error("the replication slot is gone: this chain ends here; a new base backup starts the next", "err", runErr)
		if err := w.Meta.EndChain(drainCtx, ss.chain.ID, time.Now(), "slot lost: "+runErr.Error()); err != nil {
			return err
		}
	}
	if runErr == nil || errors.Is(runErr, context.Canceled) {
		return ctx.Err()
	}
	return runErr
}

// storeError marks a failure to store or record (as opposed to a stream
// failure): draining would fail the same way.
type storeError struct{ error }

func (e storeError) Unwrap() error { return e.error }

func isStoreError(err error) bool {
	var se storeError
	return errors.As(err, &se)
}

func (w *Worker) handle(ctx context.Context, seg *segmenter, ev stream.Event) error {
	var err error
	if ev.Tx != nil {
		events := ev.Tx.TableEvents
		info := ev.Tx.Info
		err = seg.add(ctx, ev.Tx)
		if err == nil && len(events) > 0 {
			w.recordTableEvents(ctx, info, events)
		}
	} else if ev.Idle {
		err = seg.markIdle(ctx, ev)
		// With a segment pending, the mark waits for it to be stored: the
		// status shows only what is stored (and what a stuck capture is
		// stuck at).
		if err == nil && !seg.pending() {
			w.setStatus(func(s *Status) {
				if ev.WALEnd > s.FlushedLSN {
					s.FlushedLSN = ev.WALEnd
				}
				s.FlushedAt = ev.ServerTime.Add(-idleTimeMargin)
			})
		}
	}
	if err != nil {
		return storeError{err}
	}
	return nil
}

// BackupNow takes a base backup from a temporary slot while the main slot
// keeps streaming (DESIGN 1.4). Base backups of one source never overlap.
func (w *Worker) BackupNow(ctx context.Context) (store.BaseBackup, error) {
	w.backupMu.Lock()
	defer w.backupMu.Unlock()
	st := w.Status()
	if st.ChainID == 0 || st.State != store.StateStreaming {
		return store.BaseBackup{}, fmt.Errorf("source %s is %s; a base backup on demand needs it streaming (the first base backup runs by itself when it starts)", w.Source.Name, orStarting(st.State))
	}
	w.setStatus(func(s *Status) { s.BackingUp = true })
	defer w.setStatus(func(s *Status) { s.BackingUp = false })
	b, err := backup.Take(ctx, backup.Request{Source: w.Source, SourceID: w.SourceID, Meta: w.Meta, Artifacts: w.Artifacts, Log: w.Log, ChainID: st.ChainID})
	if err != nil {
		return b, err
	}
	if w.AfterBackup != nil {
		w.AfterBackup(ctx, b)
	}
	return b, nil
}

// addNewTables adds tables created since registration to an explicit-list
// publication and records from which LSN they are covered; a base backup
// then makes them restorable from there on (restores from older bases
// leave them out and say so).
func (w *Worker) addNewTables(ctx context.Context) {
	if w.Status().State != store.StateStreaming {
		return // no chain yet: the first base backup covers every table
	}
	nt, err := sourcedb.AddNewTables(ctx, w.Source)
	if err != nil {
		if ctx.Err() == nil {
			w.Log.Warn("could not check for new tables", "err", err)
		}
		return
	}
	w.recordNewTables(ctx, nt)
}

// recordNewTables records and announces what one new-tables check found
// and did.
func (w *Worker) recordNewTables(ctx context.Context, nt *sourcedb.NewTables) {
	// Read, judge and write as one step against the stream's own records
	// (recordTableEvents): a join recorded between this check's read and
	// its write would otherwise be followed by the check's stale verdict.
	w.coverageMu.Lock()
	defer w.coverageMu.Unlock()
	w.mu.Lock()
	if w.warned == nil {
		w.warned = map[string]bool{}
	}
	var fresh []string
	var freshNotOwned []string
	for _, t := range nt.NotOwned {
		if !w.warned[t] {
			w.warned[t] = true
			freshNotOwned = append(freshNotOwned, t)
		}
	}
	w.mu.Unlock()
	// Left out is recorded, so status, the TUI and restore plans name the
	// table for as long as it stays out.
	reasons := map[string]string{}
	for _, t := range nt.Dropped {
		reasons[t] = "left the publication when it lost its primary key or replica identity"
	}
	for _, t := range nt.Unlogged {
		reasons[t] = unloggedReason
	}
	// Undecided and Unlogged are what the listing saw; Dropped is what the
	// check itself did, after the listing.
	listed := map[string]bool{}
	for _, t := range append(append([]string(nil), nt.Undecided...), nt.Unlogged...) {
		listed[t] = true
	}
	for _, t := range nt.Dropped {
		delete(listed, t)
	}
	var freshUnlogged []string
	candidates := w.newlyLeftOut(ctx, append(append(nt.Undecided, nt.Dropped...), nt.Unlogged...), listed, nt.ListedLSN)
	// A transaction's commit is in the WAL a moment before it is visible:
	// the listing may have missed a key added (and the table joined by
	// the capture trigger) just before ListedLSN. What is published now
	// is not left out; the trigger's record says from when it is covered.
	published := w.publishedNow(ctx, candidates, listed)
	for _, t := range candidates {
		if published[t] {
			continue
		}
		reason := reasons[t]
		if reason == "" {
			reason = "no primary key or replica identity"
		}
		if _, err := w.Meta.AddTableCoverage(ctx, store.TableCoverage{SourceID: w.SourceID, Table: t, FromLSN: nt.LSN, AddedAt: time.Now(), LeftOut: true, Reason: reason}); err != nil {
			w.Log.Warn("could not record a table left out", "table", t, "err", err)
		}
		if reason == unloggedReason {
			freshUnlogged = append(freshUnlogged, t)
		} else {
			fresh = append(fresh, t)
		}
	}
	// Without DDL capture nothing says a table was dropped: a table with
	// coverage records (left out, or joined after registration) that no
	// longer exists is recorded as gone, so restores neither name it nor
	// replay its changes on an older base's copy of it.
	if nt.Tables != nil {
		exists := map[string]bool{}
		for _, t := range nt.Tables {
			exists[t] = true
		}
		if recs, err := w.Meta.ListTableCoverage(ctx, w.SourceID); err == nil {
			since := map[string]pglogrepl.LSN{}
			live := map[string]bool{}
			var names []string
			for _, c := range recs {
				if _, seen := live[c.Table]; !seen {
					names = append(names, c.Table)
				}
				since[c.Table] = c.FromLSN
				live[c.Table] = c.Reason != store.TableDropped || c.LeftOut
			}
			for _, t := range names {
				if !live[t] {
					continue
				}
				// A record newer than the listing may be of a table the
				// listing could not see yet.
				if !exists[t] && since[t] < nt.ListedLSN {
					if _, err := w.Meta.AddTableCoverage(ctx, store.TableCoverage{SourceID: w.SourceID, Table: t, FromLSN: nt.LSN, AddedAt: time.Now(), Reason: store.TableDropped}); err != nil {
						w.Log.Warn("could not record a dropped table", "table", t, "err", err)
					}
				}
			}
		}
	}
	if len(freshUnlogged) > 0 {
		w.notify(ctx, slog.LevelWarn, kind.PublicationTableLeftOut, fmt.Sprintf("table(s) %s are UNLOGGED: their changes are not in the WAL, so restores hold them as the base backup had them (ALTER TABLE … SET LOGGED to back them up)", strings.Join(freshUnlogged, ", ")))
	}
	if len(fresh) > 0 {
		w.notify(ctx, slog.LevelWarn, kind.PublicationTableLeftOut, fmt.Sprintf("table(s) %s have no primary key or replica identity: NOT backed up (publishing them would make the application's UPDATE and DELETE fail); add a primary key, list them in replica_identity_full, or set tables_without_key = \"replica_identity_full\" in source %s", strings.Join(fresh, ", "), w.Source.Name))
	}
	if len(freshNotOwned) > 0 {
		w.notify(ctx, slog.LevelWarn, kind.PublicationTableNotOwned, fmt.Sprintf("new table(s) %s are not owned by btfu's role: not backed up; change their owner or add them to exclude_tables in source %s", strings.Join(freshNotOwned, ", "), w.Source.Name))
	}
	if len(nt.Added) == 0 {
		return
	}
	for _, t := range nt.Added {
		if _, err := w.Meta.AddTableCoverage(ctx, store.TableCoverage{SourceID: w.SourceID, Table: t, FromLSN: nt.LSN, AddedAt: time.Now()}); err != nil {
			w.Log.Warn("could not record table coverage", "table", t, "err", err)
		}
	}
	w.notify(ctx, slog.LevelInfo, kind.PublicationTableAdded, fmt.Sprintf("new table(s) %s added to publication %s, covered from %s; %s", strings.Join(nt.Added, ", "), w.Source.Publication, nt.LSN, w.joinedBackupWhen(ctx)))
	w.mu.Lock()
	w.backupDue = "new tables"
	w.mu.Unlock()
}

// lastBaseBackup is when the newest base backup of the source (running or
// complete) started, whatever started it (the chain's first, the
// schedule, on demand, tables joining), or the last one started here for
// tables that joined.
func (w *Worker) lastBaseBackup(ctx context.Context) time.Time {
	w.mu.Lock()
	last := w.lastJoinedBackup
	w.mu.Unlock()
	bb, err := w.Meta.ListBaseBackups(ctx, w.SourceID)
	if err != nil {
		w.Log.Warn("could not read base backups", "err", err)
	}
	for _, b := range bb {
		// A failed one made nothing restorable: it does not delay the next.
		if b.Status != store.BackupFailed && b.StartedAt.After(last) {
			last = b.StartedAt
		}
	}
	return last
}

// publishedNow returns which of the tables judged by the listing (listed)
// are in the source's publication now, themselves or through an ancestor. On a failure it says none are, and
// the listing's verdict stands.
func (w *Worker) publishedNow(ctx context.Context, tables []string, listed map[string]bool) map[string]bool {
	var ask []string
	for _, t := range tables {
		if listed[t] {
			ask = append(ask, t)
		}
	}
	out := map[string]bool{}
	if len(ask) == 0 {
		return out
	}
	conn, err := sourcedb.Connect(ctx, w.Source)
	if err != nil {
		w.Log.Warn("could not check the publication again", "err", err)
		return out
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// A partition is published when it or any of its ancestors is a
	// member: a partitioned table that got a key publishes its partitions.
	// (pg_partition_ancestors has no rows for a table that is no
	// partition.)
	rows, err := conn.Query(ctx, `SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname || '.' || c.relname = ANY($2)
		  AND EXISTS (SELECT 1 FROM pg_publication_rel pr JOIN pg_publication p ON p.oid = pr.prpubid
		              WHERE p.pubname = $1 AND (pr.prrelid = c.oid OR pr.prrelid IN (SELECT relid FROM pg_partition_ancestors(c.oid))))`, w.Source.Publication, ask)
	if err != nil {
		w.Log.Warn("could not check the publication again", "err", err)
		return out
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		w.Log.Warn("could not check the publication again", "err", err)
		return out
	}
	for _, n := range names {
		out[n] = true
	}
	return out
}

// joinedBackupWhen says when the base backup for tables that joined now
// starts: joined_backup_interval after the newest base backup.
func (w *Worker) joinedBackupWhen(ctx context.Context) string {
	last := w.lastBaseBackup(ctx)
	if next := last.Add(w.Source.JoinedBackupInterval.D()); !last.IsZero() && time.Now().Before(next) {
		return fmt.Sprintf("the base backup that makes them restorable starts at %s (joined_backup_interval after the newest base backup); until then restores from older base backups name them LEFT OUT", next.UTC().Format(time.RFC3339))
	}
	return "taking a base backup so restores include their earlier rows"
}

// unloggedReason is why an UNLOGGED table is not backed up.
const unloggedReason = "UNLOGGED: its changes are not in the WAL"

// recordTableEvents records what the DDL-capture trigger did to the
// publication in a transaction: an existing table that joined is covered
// from its commit on (restores from older bases leave it out), one that
// left (it lost its replica identity) is left out from there.
func (w *Worker) recordTableEvents(ctx context.Context, info segment.TxInfo, events []segment.Record) {
	w.coverageMu.Lock()
	defer w.coverageMu.Unlock()
	var joined []string
	var known map[string]bool // tables with coverage records, read at the first drop
	for _, ev := range events {
		var m struct {
			Action string `json:"action"`
			Schema string `json:"schema"`
			Table  string `json:"table"`
		}
		if err := json.Unmarshal([]byte(ev.Content), &m); err != nil {
			w.Log.Warn("unreadable table message from the capture trigger", "content", ev.Content, "err", err)
			continue
		}
		name := m.Schema + "." + m.Table
		c := store.TableCoverage{SourceID: w.SourceID, Table: name, FromLSN: info.CommitLSN, AddedAt: info.CommitTime}
		switch m.Action {
		case "joined":
			joined = append(joined, name)
			if err := RecordJoined(ctx, w.Meta, w.SourceID, []string{name}, info.CommitLSN, info.CommitTime); err != nil {
				w.Log.Warn("could not record table coverage", "table", name, "err", err)
			}
			continue
		case "left_out":
			c.LeftOut, c.Reason = true, "no primary key or replica identity"
			w.notify(ctx, slog.LevelWarn, kind.PublicationTableLeftOut, fmt.Sprintf("new table %s has no primary key or replica identity: NOT backed up (publishing it would make the application's UPDATE and DELETE fail); add a primary key, list it in replica_identity_full, or set tables_without_key = \"replica_identity_full\" in source %s", name, w.Source.Name))
		case "unlogged":
			c.LeftOut, c.Reason = true, "set UNLOGGED: its changes are not in the WAL"
			w.notify(ctx, slog.LevelWarn, kind.PublicationTableLeftOut, fmt.Sprintf("table %s was set UNLOGGED at %s: its changes are not in the WAL, so it is NOT backed up from there on", name, info.CommitLSN))
		case "left":
			c.LeftOut, c.Reason = true, "left the publication when it lost its primary key or replica identity"
			w.notify(ctx, slog.LevelWarn, kind.PublicationTableLeftOut, fmt.Sprintf("table %s lost its primary key or replica identity and left publication %s at %s: NOT backed up from there on", name, w.Source.Publication, info.CommitLSN))
		case "catalog":
			c.LeftOut, c.Reason = true, "moved into schema pg_catalog, which pg_dump does not dump"
			w.notify(ctx, slog.LevelWarn, kind.PublicationTableLeftOut, fmt.Sprintf("table %s was moved into schema pg_catalog at %s: pg_dump does not dump tables there, so it is NOT backed up from there on", name, info.CommitLSN))
		case "dropped":
			// Ends what earlier records said of the table (left out, joined
			// late); only tables that have such records need one.
			if known == nil {
				known = w.coveredTables(ctx)
			}
			if !known[name] {
				continue
			}
			c.Reason = store.TableDropped
		default:
			continue
		}
		if _, err := w.Meta.AddTableCoverage(ctx, c); err != nil {
			w.Log.Warn("could not record table coverage", "table", name, "err", err)
		}
	}
	if len(joined) > 0 {
		msg := fmt.Sprintf("table(s) %s joined publication %s at %s; %s", strings.Join(joined, ", "), w.Source.Publication, info.CommitLSN, w.joinedBackupWhen(ctx))
		w.notify(ctx, slog.LevelInfo, kind.PublicationTableAdded, msg)
		// The sequence loop starts it, under the worker's context.
		w.mu.Lock()
		w.backupDue = "tables joined the publication"
		w.mu.Unlock()
	}
}

// RecordJoined records that existing tables joined the source's
// publication at lsn (at: its time): the stream holds their changes from
// there on, so restores from older base backups leave them out and say
// so, until a base backup taken after lsn holds them. Every path that adds
// tables to a publication with a chain records them here: the capture
// trigger ("joined"), registration by the engine and by 'btfu register'.
// The worker takes that base backup itself for "joined"; whatever the
// path, the engine takes it when it next starts the source if none was
// taken after lsn (it reads these records).
func RecordJoined(ctx context.Context, meta store.Store, sourceID int64, tables []string, lsn pglogrepl.LSN, at time.Time) error {
	for _, t := range tables {
		if _, err := meta.AddTableCoverage(ctx, store.TableCoverage{SourceID: sourceID, Table: t, FromLSN: lsn, AddedAt: at}); err != nil {
			return fmt.Errorf("record coverage of %s: %w", t, err)
		}
	}
	return nil
}

// coveredTables returns the tables that have coverage records.
func (w *Worker) coveredTables(ctx context.Context) map[string]bool {
	out := map[string]bool{}
	recs, err := w.Meta.ListTableCoverage(ctx, w.SourceID)
	if err != nil {
		w.Log.Warn("could not read table coverage", "err", err)
		return out
	}
	for _, c := range recs {
		out[c.Table] = true
	}
	return out
}

// newlyLeftOut returns the tables of names whose newest coverage record
// does not already say they are left out. Tables in stale (what a listing
// made at listedLSN judged) are skipped when a record at or after
// listedLSN exists: the capture trigger recorded what happened to them
// (joined with a new key, say) after the listing, and the listing's
// verdict must not overrule it.
func (w *Worker) newlyLeftOut(ctx context.Context, names []string, stale map[string]bool, listedLSN pglogrepl.LSN) []string {
	if len(names) == 0 {
		return nil
	}
	recs, err := w.Meta.ListTableCoverage(ctx, w.SourceID)
	if err != nil {
		w.Log.Warn("could not read table coverage", "err", err)
		return nil
	}
	out := map[string]bool{}
	for _, t := range store.LeftOutNow(recs) {
		out[t] = true
	}
	for _, c := range recs {
		if stale[c.Table] && c.FromLSN >= listedLSN {
			out[c.Table] = true
		}
	}
	var fresh []string
	seen := map[string]bool{}
	for _, t := range names {
		if !out[t] && !seen[t] {
			seen[t] = true
			fresh = append(fresh, t)
		}
	}
	return fresh
}

// notify tells the user: through Notify (the engine logs and publishes
// the event), or in the log when there is none. Once, never both.
func (w *Worker) notify(ctx context.Context, level slog.Level, k kind.Kind, msg string) {
	if w.Notify != nil {
		w.Notify(ctx, level, k, msg)
		return
	}
	w.Log.Log(ctx, level, msg, "kind", string(k))
}

// backupSoon takes a base backup in the background; Run waits for it.
func (w *Worker) backupSoon(ctx context.Context, why string) {
	w.bg.Add(1)
	go func() {
		defer w.bg.Done()
		if _, err := w.BackupNow(ctx); err != nil && ctx.Err() == nil {
			// Tried again joined_backup_interval after this attempt (a
			// busy schema can change under pg_dump), not at once.
			w.mu.Lock()
			if w.backupDue == "" {
				w.backupDue = why
			}
			w.lastJoinedBackup = time.Now()
			w.mu.Unlock()
			w.notify(ctx, slog.LevelError, kind.BackupFailed, fmt.Sprintf("base backup after %s failed (tried again in %s): %v", why, w.Source.JoinedBackupInterval.D(), err))
		}
	}()
}

func orStarting(s string) string {
	if s == "" {
		return store.StateStarting
	}
	return s
}

// sequences snapshots the source's sequences at start and on an interval;
// the same query gives the source's WAL position for lag. On the same
// interval it checks the WAL the main slot retains (walguard.go).
func (w *Worker) sequences(ctx context.Context) {
	t := time.NewTicker(w.SequenceInterval)
	defer t.Stop()
	for {
		snap, err := backup.SnapshotSequences(ctx, w.Source, w.SourceID, w.Meta)
		if err != nil && ctx.Err() == nil {
			w.Log.Warn("sequence snapshot failed", "err", err)
		} else if err == nil {
			w.setStatus(func(s *Status) { s.SourceLSN, s.SourceAt = snap.LSN, snap.TakenAt })
		}
		w.checkWAL(ctx) // the WAL guard
		w.addNewTables(ctx)
		// A base backup for tables that joined, joined_backup_interval
		// after the newest one of any kind: a migration attaching
		// partitions one by one makes one pg_dump of the source, not one
		// per partition, and no pg_dump follows another at once.
		w.mu.Lock()
		why := w.backupDue
		w.mu.Unlock()
		if why != "" {
			last := w.lastBaseBackup(ctx)
			w.mu.Lock()
			if last.IsZero() || time.Since(last) >= w.Source.JoinedBackupInterval.D() {
				w.backupDue, w.lastJoinedBackup = "", time.Now()
			} else {
				why = ""
			}
			w.mu.Unlock()
		}
		if why != "" {
			w.backupSoon(ctx, why)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

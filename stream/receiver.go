// Package stream receives a source's logical changes (pgoutput) over a
// replication connection and hands over whole, committed transactions in
// commit order. It answers keepalives at once, reports the acknowledged
// position the checkpoint (capture/checkpoint.go) gives it and nothing
// beyond, and tells when the source is idle so coverage can extend on a
// quiet database (DESIGN 3).
package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/btfu/btfu/segment"
)

// LSN is a WAL position.
type LSN = pglogrepl.LSN

// Event is what the receiver hands over, in order: a committed
// transaction, or an idle mark saying that no transaction is open and
// everything the server decoded before WALEnd has been handed over.
type Event struct {
	Tx *Tx

	Idle       bool
	WALEnd     LSN
	ServerTime time.Time
}

// TypeNamer names a column type, e.g. (1700, 655366) → "numeric(10,2)".
type TypeNamer func(ctx context.Context, oid uint32, typmod int32) (string, error)

// Config tunes a Receiver.
type Config struct {
	Slot        string
	Publication string
	// ProtoVersion is the pgoutput protocol: 1 on PostgreSQL 13, 2 with
	// Streaming on 14+.
	ProtoVersion int
	Streaming    bool
	// StartLSN is the durable cursor: transactions whose commit LSN is
	// below it are duplicates of stored ones and are skipped (DESIGN 3.4).
	StartLSN LSN
	// SpoolDir holds large transactions while they arrive.
	SpoolDir string
	// SpoolThreshold is the in-memory size (bytes) past which a
	// transaction goes to a spool file; default 8 MiB.
	SpoolThreshold int
	// StatusInterval is how often the standby status is sent (and a reply
	// requested, so idle sources send keepalives); default 1s.
	StatusInterval time.Duration
	// SilenceTimeout: when no message at all arrives for this long after
	// a reply was requested, Run returns ErrSilent so the caller
	// reconnects. A walsender answers a reply request at once unless it
	// is busy in one long transaction, so silence means a connection that
	// died without closing (a dropped route, a stalled proxy). Default
	// 10s.
	SilenceTimeout time.Duration
	TypeName       TypeNamer
}

// Receiver streams one slot. Use it from one goroutine (Run); Ack may be
// called from any goroutine.
type Receiver struct {
	conn *pgconn.PgConn
	cfg  Config

	acked    atomic.Uint64
	received LSN // highest WAL position seen
	// serverEnd is the server's WAL end from the newest message: the
	// source's position, for lag. Read by other goroutines.
	serverEnd atomic.Uint64

	rels     map[uint32]*segment.Relation
	types    map[[2]int64]string
	typeMsgs map[uint32]string // user types' names from Type messages
	cur      *builder          // open non-streamed transaction
	streams  map[uint32]*builder
	inStream bool
	streamX  uint32

	lastStatus time.Time
	// askedAt is when a reply was requested with nothing received since
	// (zero when every request has been answered).
	askedAt time.Time
	// msgLSN is the WAL position of the XLogData message being handled.
	msgLSN LSN
}

// New prepares a receiver on an open replication connection
// (replication=database).
func New(conn *pgconn.PgConn, cfg Config) *Receiver {
	if cfg.SpoolThreshold == 0 {
		cfg.SpoolThreshold = 8 << 20
	}
	if cfg.StatusInterval == 0 {
		cfg.StatusInterval = time.Second
	}
	if cfg.SilenceTimeout == 0 {
		cfg.SilenceTimeout = DefaultSilenceTimeout
	}
	r := &Receiver{conn: conn, cfg: cfg, rels: map[uint32]*segment.Relation{}, types: map[[2]int64]string{}, typeMsgs: map[uint32]string{}, streams: map[uint32]*builder{}}
	r.acked.Store(uint64(cfg.StartLSN))
	r.received = cfg.StartLSN
	return r
}

// Ack records that everything up to lsn is durably stored and recorded;
// it is what the slot may be told (DESIGN 3.1). It never moves back.
func (r *Receiver) Ack(lsn LSN) {
	for {
		old := r.acked.Load()
		if uint64(lsn) <= old || r.acked.CompareAndSwap(old, uint64(lsn)) {
			return
		}
	}
}

// Acked is the position last given to Ack.
func (r *Receiver) Acked() LSN { return LSN(r.acked.Load()) }

// ErrSlotGone: the slot does not exist or can no longer stream; the chain
// is broken.
var ErrSlotGone = errors.New("replication slot is gone or lost")

// ErrSilent: the server sent nothing for Config.SilenceTimeout after a
// reply was requested.
var ErrSilent = errors.New("no message from the server")

// DefaultSilenceTimeout is Config.SilenceTimeout's default.
const DefaultSilenceTimeout = 10 * time.Second

// slotGone tells the errors that mean the slot cannot stream any more
// (missing, invalidated) from others of the same codes: a missing
// publication is also 42704 (undefined_object), and the slot survives it.
func slotGone(pgErr *pgconn.PgError) bool {
	switch pgErr.Code {
	case "55000":
		return true
	case "42704":
		return strings.Contains(pgErr.Message, "replication slot")
	}
	return false
}

// MessageError is a failure to handle one message of the stream (its
// decoding, or what it says): the server sends the same message again
// after a reconnect, so it repeats at the same position.
type MessageError struct {
	LSN LSN // WAL position of the message
	Err error
}

func (e *MessageError) Error() string { return fmt.Sprintf("message at %s: %v", e.LSN, e.Err) }

func (e *MessageError) Unwrap() error { return e.Err }

// Disconnected reports whether err is the connection failing (closed,
// reset, timed out) rather than something the server or a message said.
func Disconnected(err error) bool {
	var ne net.Error
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr):
		return false
	case errors.Is(err, ErrSilent), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.EPIPE), errors.As(err, &ne):
		return true
	}
	return pgconn.Timeout(err) || strings.Contains(err.Error(), "conn closed")
}

// messageError marks err, met handling the current message, as the
// message's unless it is the connection (or ctx) failing.
func (r *Receiver) messageError(ctx context.Context, err error) error {
	var pgErr *pgconn.PgError
	if ctx.Err() != nil || errors.Is(err, context.Canceled) || errors.As(err, &pgErr) || Disconnected(err) {
		return err
	}
	return &MessageError{LSN: r.msgLSN, Err: err}
}

// Run starts replication and delivers events to out until ctx ends or the
// connection fails. It releases spooled transactions it still holds.
func (r *Receiver) Run(ctx context.Context, out chan<- Event) error {
	defer r.releaseAll()
	args := []string{
		"proto_version '" + strconv.Itoa(r.cfg.ProtoVersion) + "'",
		"publication_names '" + r.cfg.Publication + "'",
	}
	if r.cfg.ProtoVersion >= 2 {
		// Logical messages (DDL capture) exist from PostgreSQL 14 on, as
		// does protocol 2; 13's pgoutput refuses the option.
		args = append(args, "messages 'true'")
	}
	if r.cfg.Streaming {
		args = append(args, "streaming 'true'")
	}
	err := pglogrepl.StartReplication(ctx, r.conn, r.cfg.Slot, r.cfg.StartLSN, pglogrepl.StartReplicationOptions{PluginArgs: args})
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && slotGone(pgErr) {
			return fmt.Errorf("%w: %s", ErrSlotGone, pgErr.Message)
		}
		return fmt.Errorf("start replication on slot %s: %w", r.cfg.Slot, err)
	}
	// The read deadline (which wakes the loop to send the next standby
	// status) is set on the connection itself, and ctx ending moves it to
	// now. Passing a context to ReceiveMessage instead makes pgconn watch
	// it on every message: a fifth of the loop's CPU at a million changes.
	netConn := r.conn.Conn()
	var dl sync.Mutex
	done := false // Run returned: the connection's deadline is left alone
	stopWatch := context.AfterFunc(ctx, func() {
		dl.Lock()
		defer dl.Unlock()
		if !done {
			_ = netConn.SetReadDeadline(time.Now())
		}
	})
	defer func() {
		stopWatch()
		dl.Lock()
		done = true
		dl.Unlock()
		_ = netConn.SetReadDeadline(time.Time{})
	}()
	var until time.Time
	for {
		if err := r.maybeSendStatus(ctx, false); err != nil {
			return err
		}
		if next := r.lastStatus.Add(r.cfg.StatusInterval); !next.Equal(until) {
			dl.Lock()
			if ctx.Err() != nil {
				dl.Unlock()
				return ctx.Err()
			}
			until = next
			_ = netConn.SetReadDeadline(next)
			dl.Unlock()
		}
		msg, err := r.conn.ReceiveMessage(context.Background())
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if pgconn.Timeout(err) {
				until = time.Time{}
				if !r.askedAt.IsZero() && time.Since(r.askedAt) >= r.cfg.SilenceTimeout {
					return fmt.Errorf("%w for %s after a reply was requested", ErrSilent, r.cfg.SilenceTimeout)
				}
				continue
			}
			return fmt.Errorf("receive: %w", err)
		}
		r.askedAt = time.Time{}
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			if err := r.handleCopyData(ctx, msg.Data, out); err != nil {
				return r.messageError(ctx, err)
			}
		case *pgproto3.ErrorResponse:
			pgErr := pgconn.ErrorResponseToPgError(msg)
			if slotGone(pgErr) {
				return fmt.Errorf("%w: %s", ErrSlotGone, pgErr.Message)
			}
			return fmt.Errorf("replication: %w", pgErr)
		case *pgproto3.CopyDone:
			return errors.New("replication: the server ended the stream")
		}
	}
}

// SendStatus reports the acknowledged position to the server now. Use it
// after Run has returned (on shutdown, once the last segment is stored) so
// the slot releases WAL without waiting for the next connection.
func (r *Receiver) SendStatus(ctx context.Context) error { return r.maybeSendStatus(ctx, true) }

func (r *Receiver) maybeSendStatus(ctx context.Context, force bool) error {
	if !force && time.Since(r.lastStatus) < r.cfg.StatusInterval {
		return nil
	}
	acked := r.Acked()
	err := pglogrepl.SendStandbyStatusUpdate(ctx, r.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: acked,
		WALFlushPosition: acked,
		WALApplyPosition: acked,
		ClientTime:       time.Now(),
		// Ask for a keepalive back: on an idle source it tells how far the
		// server has decoded, which extends coverage in time.
		ReplyRequested: !force,
	})
	if err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	r.lastStatus = time.Now()
	if !force && r.askedAt.IsZero() {
		r.askedAt = r.lastStatus
	}
	return nil
}

func (r *Receiver) handleCopyData(ctx context.Context, data []byte, out chan<- Event) error {
	if len(data) == 0 {
		return nil
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return fmt.Errorf("parse keepalive: %w", err)
		}
		if ka.ReplyRequested {
			if err := r.maybeSendStatus(ctx, true); err != nil {
				return err
			}
		}
		if ka.ServerWALEnd > r.received {
			r.received = ka.ServerWALEnd
		}
		r.noteServerEnd(ka.ServerWALEnd)
		if r.cur == nil && len(r.streams) == 0 && !r.inStream {
			return r.emit(ctx, out, Event{Idle: true, WALEnd: ka.ServerWALEnd, ServerTime: ka.ServerTime})
		}
		return nil
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return fmt.Errorf("parse XLogData: %w", err)
		}
		if xld.WALStart > r.received {
			r.received = xld.WALStart
		}
		r.msgLSN = xld.WALStart
		r.noteServerEnd(xld.ServerWALEnd)
		return r.handleMessage(ctx, xld.WALData, out)
	}
	return nil
}

func (r *Receiver) noteServerEnd(l LSN) {
	if uint64(l) > r.serverEnd.Load() {
		r.serverEnd.Store(uint64(l))
	}
}

// ServerWALEnd is the source's WAL end as of the newest message or
// keepalive (0 before the first). Safe to call from any goroutine.
func (r *Receiver) ServerWALEnd() LSN { return LSN(r.serverEnd.Load()) }

// emit hands an event over, keeping the stream alive (status updates)
// while the consumer is busy: backpressure never silences the receiver.
func (r *Receiver) emit(ctx context.Context, out chan<- Event, ev Event) error {
	select {
	case out <- ev: // the usual case: no timer needed
		return nil
	default:
	}
	t := time.NewTicker(r.cfg.StatusInterval)
	defer t.Stop()
	for {
		select {
		case out <- ev:
			return nil
		case <-t.C:
			if err := r.maybeSendStatus(ctx, true); err != nil {
				return err
			}
		case <-ctx.Done():
			if ev.Tx != nil {
				ev.Tx.Release()
			}
			return ctx.Err()
		}
	}
}

func (r *Receiver) builderFor(xid uint32) (*builder, error) {
	if r.inStream {
		b := r.streams[r.streamX]
		if b == nil {
			return nil, fmt.Errorf("change for streamed transaction %d outside its stream", r.streamX)
		}
		return b, nil
	}
	if r.cur == nil {
		return nil, fmt.Errorf("change outside a transaction")
	}
	return r.cur, nil
}

// add gives a change to its transaction. Inside a stream block xid is the
// (sub)transaction that made the change, kept for subtransaction aborts.
func (r *Receiver) add(xid uint32, rec segment.Record, rels ...*segment.Relation) error {
	b, err := r.builderFor(xid)
	if err != nil {
		return err
	}
	if !r.inStream {
		xid = b.xid
	}
	return b.add(xid, rels, rec)
}

func (r *Receiver) relation(oid uint32) (*segment.Relation, error) {
	rel := r.rels[oid]
	if rel == nil {
		return nil, fmt.Errorf("change for relation %d before its Relation message", oid)
	}
	return rel, nil
}

func (r *Receiver) handleMessage(ctx context.Context, data []byte, out chan<- Event) error {
	msg, err := DecodeMessage(data, r.inStream)
	if err != nil {
		return err
	}
	switch m := msg.(type) {
	case *BeginMsg:
		if r.cur != nil {
			r.cur.discard()
		}
		r.cur = newBuilder(m.XID, r.cfg.SpoolDir, r.cfg.SpoolThreshold)
	case *CommitMsg:
		if r.cur == nil {
			return errors.New("commit without begin")
		}
		b := r.cur
		r.cur = nil
		return r.deliver(ctx, out, b, segment.TxInfo{XID: b.xid, CommitLSN: m.CommitLSN, EndLSN: m.EndLSN, CommitTime: m.CommitTime})
	case *OriginMsg:
		// The origin of a transaction replayed into the source: nothing a
		// restore needs.
	case *TypeMsg:
		// A user-defined type, as of the change being decoded (sent
		// before a Relation message that uses it): its name is the
		// fallback when the type is gone from the catalog by the time
		// btfu names it. A name cached earlier may be stale (the type
		// was renamed, or dropped and its OID reused).
		name := quoteIdent(m.Name)
		if m.Namespace != "" && m.Namespace != "pg_catalog" {
			name = quoteIdent(m.Namespace) + "." + name
		}
		r.typeMsgs[m.TypeOID] = name
		for k := range r.types {
			if k[0] == int64(m.TypeOID) {
				delete(r.types, k)
			}
		}
	case *RelationMsg:
		return r.onRelation(ctx, m)
	case *InsertMsg:
		rel, err := r.relation(m.RelOID)
		if err != nil {
			return err
		}
		rec := segment.Record{T: segment.TypeInsert, RelOID: m.RelOID}
		if rec.New, err = values(m.New); err != nil {
			return fmt.Errorf("insert into %s.%s: %w", rel.Schema, rel.Name, err)
		}
		return r.add(m.XID, rec, rel)
	case *UpdateMsg:
		rel, err := r.relation(m.RelOID)
		if err != nil {
			return err
		}
		rec := segment.Record{T: segment.TypeUpdate, RelOID: m.RelOID}
		if rec.New, err = values(m.New); err == nil && m.OldKind != 0 {
			rec.OldKind = string(rune(m.OldKind))
			rec.Old, err = values(m.Old)
		}
		if err != nil {
			return fmt.Errorf("update of %s.%s: %w", rel.Schema, rel.Name, err)
		}
		return r.add(m.XID, rec, rel)
	case *DeleteMsg:
		rel, err := r.relation(m.RelOID)
		if err != nil {
			return err
		}
		rec := segment.Record{T: segment.TypeDelete, RelOID: m.RelOID, OldKind: string(rune(m.OldKind))}
		if rec.Old, err = values(m.Old); err != nil {
			return fmt.Errorf("delete from %s.%s: %w", rel.Schema, rel.Name, err)
		}
		return r.add(m.XID, rec, rel)
	case *TruncateMsg:
		rec := segment.Record{T: segment.TypeTruncate, RelOIDs: m.RelOIDs, Cascade: m.Cascade, RestartIdentity: m.RestartIdentity}
		// The schemas of truncated relations travel with the change.
		var rels []*segment.Relation
		for _, oid := range m.RelOIDs {
			rel, err := r.relation(oid)
			if err != nil {
				return err
			}
			rels = append(rels, rel)
		}
		return r.add(m.XID, rec, rels...)
	case *LogicalMsg:
		if !m.Transactional || m.Prefix == segment.OrderMessagePrefix {
			return nil // btfu emits only transactional messages; the separator only orders
		}
		return r.add(m.XID, segment.Record{T: segment.TypeMessage, Prefix: m.Prefix, Content: string(m.Content)})
	case *StreamStartMsg:
		r.inStream, r.streamX = true, m.XID
		if r.streams[m.XID] == nil {
			r.streams[m.XID] = newBuilder(m.XID, r.cfg.SpoolDir, r.cfg.SpoolThreshold)
		}
	case *StreamStopMsg:
		r.inStream = false
	case *StreamCommitMsg:
		b := r.streams[m.XID]
		if b == nil {
			return fmt.Errorf("stream commit of unknown transaction %d", m.XID)
		}
		delete(r.streams, m.XID)
		return r.deliver(ctx, out, b, segment.TxInfo{XID: m.XID, CommitLSN: m.CommitLSN, EndLSN: m.EndLSN, CommitTime: m.CommitTime})
	case *StreamAbortMsg:
		b := r.streams[m.XID]
		if b == nil {
			return nil
		}
		if m.SubXID == m.XID {
			b.discard()
			delete(r.streams, m.XID)
		} else {
			b.abortSub(m.SubXID)
		}
	case *BeginPrepareMsg, *PrepareMsg, *StreamPrepareMsg, *CommitPreparedMsg, *RollbackPreparedMsg:
		// Only sent with two_phase, which btfu does not request; skipping
		// them would lose the prepared transactions' changes.
		return fmt.Errorf("pgoutput sent a %s message, but two_phase was not requested", MessageName(m.Type()))
	default:
		return fmt.Errorf("pgoutput %s message not handled", MessageName(m.Type()))
	}
	return nil
}

// deliver completes a transaction and hands it over, unless it is a
// duplicate of one already stored (commit LSN below the start cursor).
func (r *Receiver) deliver(ctx context.Context, out chan<- Event, b *builder, info segment.TxInfo) error {
	if info.CommitLSN < r.cfg.StartLSN {
		b.discard()
		return nil
	}
	tx, err := b.finish(info)
	if err != nil {
		return err
	}
	return r.emit(ctx, out, Event{Tx: tx})
}

func (r *Receiver) onRelation(ctx context.Context, m *RelationMsg) error {
	// pgoutput names pg_catalog "" (a user table moved there).
	schema := m.Namespace
	if schema == "" {
		schema = "pg_catalog"
	}
	rel := &segment.Relation{OID: m.RelOID, Schema: schema, Name: m.Name, ReplicaIdentity: string(rune(m.ReplicaIdentity))}
	for i := range m.Columns {
		c := &m.Columns[i]
		name, err := r.typeName(ctx, c.TypeOID, c.TypMod)
		if err != nil {
			return err
		}
		rel.Columns = append(rel.Columns, segment.Column{Name: c.Name, TypeOID: c.TypeOID, Type: name, TypMod: c.TypMod, Key: c.Key()})
	}
	old := r.rels[m.RelOID]
	r.rels[m.RelOID] = rel
	// A changed shape is recorded in the transaction as derived DDL
	// (DESIGN 5), for sources where no event trigger captures DDL.
	if old != nil && (r.cur != nil || r.inStream) {
		if stmts := DeriveDDL(old, rel); len(stmts) > 0 {
			return r.add(0, segment.Record{T: segment.TypeDDL, RelOID: rel.OID, SQL: strings.Join(stmts, "; "), Note: "derived from a relation message"}, rel)
		}
	}
	return nil
}

// DeriveDDL returns the statements that turn relation old into new as far
// as a Relation message shows: a rename of the table, added and dropped
// columns, and changed column types. A renamed column shows as a drop and
// an add (pgoutput does not send column numbers). The statements are
// idempotent, so replay may meet them after captured DDL already ran.
func DeriveDDL(old, new *segment.Relation) []string {
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
	table := q(new.Schema) + "." + q(new.Name)
	var out []string
	if old.Schema != new.Schema || old.Name != new.Name {
		out = append(out, "ALTER TABLE IF EXISTS "+q(old.Schema)+"."+q(old.Name)+" RENAME TO "+q(new.Name))
	}
	oldCols := map[string]segment.Column{}
	for _, c := range old.Columns {
		oldCols[c.Name] = c
	}
	newCols := map[string]bool{}
	for _, c := range new.Columns {
		newCols[c.Name] = true
		prev, ok := oldCols[c.Name]
		switch {
		case !ok:
			out = append(out, "ALTER TABLE "+table+" ADD COLUMN IF NOT EXISTS "+q(c.Name)+" "+c.Type)
		case prev.TypeOID != c.TypeOID || prev.TypMod != c.TypMod:
			out = append(out, "ALTER TABLE "+table+" ALTER COLUMN "+q(c.Name)+" TYPE "+c.Type)
		}
	}
	for _, c := range old.Columns {
		if !newCols[c.Name] {
			out = append(out, "ALTER TABLE "+table+" DROP COLUMN IF EXISTS "+q(c.Name))
		}
	}
	if old.ReplicaIdentity != new.ReplicaIdentity {
		ident := map[string]string{"d": "DEFAULT", "f": "FULL", "n": "NOTHING"}[new.ReplicaIdentity]
		if ident != "" {
			out = append(out, "ALTER TABLE "+table+" REPLICA IDENTITY "+ident)
		}
	}
	return out
}

func (r *Receiver) typeName(ctx context.Context, oid uint32, typmod int32) (string, error) {
	key := [2]int64{int64(oid), int64(typmod)}
	if n, ok := r.types[key]; ok {
		return n, nil
	}
	if r.cfg.TypeName == nil {
		return "", nil
	}
	n, err := r.cfg.TypeName(ctx, oid, typmod)
	if err != nil {
		return "", fmt.Errorf("name type %d: %w", oid, err)
	}
	if n == "???" || n == "" || strings.HasPrefix(n, "-") {
		// format_type of a type dropped since the change (the stream
		// runs behind the catalog): the Type message's name, which
		// pgoutput gives as the base type's for a domain, reads the
		// values the same.
		fallback, ok := r.typeMsgs[oid]
		if !ok {
			return "", fmt.Errorf("name type %d: it was dropped from the source before btfu read the change, and pgoutput did not name it", oid)
		}
		return fallback, nil
	}
	r.types[key] = n
	return n, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// values turns a tuple into segment values in PostgreSQL's text form,
// NULL and unchanged TOAST kept apart. A row's texts share one string, so
// a row costs two allocations whatever its width. A tuple of no columns
// gives an empty, non-nil row; no tuple gives nil. Binary data is an
// error: btfu never asks for it, and it is not the text form.
func values(t Tuple) ([]segment.Value, error) {
	if t == nil {
		return nil, nil
	}
	size := 0
	for i, d := range t {
		switch d.Kind {
		case DatumNull, DatumUnchanged:
		case DatumText:
			size += len(d.Data)
		default:
			return nil, fmt.Errorf("column %d: tuple data of kind %q, not text", i, d.Kind)
		}
	}
	var b strings.Builder
	b.Grow(size)
	for _, d := range t {
		b.Write(d.Data)
	}
	all := b.String()
	out := make([]segment.Value, len(t))
	for i, d := range t {
		switch d.Kind {
		case DatumNull:
			out[i] = segment.Value{Kind: segment.Null}
		case DatumUnchanged:
			out[i] = segment.Value{Kind: segment.Unchanged}
		default:
			out[i] = segment.Value{Kind: segment.Text, Text: all[:len(d.Data)]}
			all = all[len(d.Data):]
		}
	}
	return out, nil
}

func (r *Receiver) releaseAll() {
	if r.cur != nil {
		r.cur.discard()
		r.cur = nil
	}
	for x, b := range r.streams {
		b.discard()
		delete(r.streams, x)
	}
}

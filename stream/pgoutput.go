package stream

import (
	"encoding/binary"
	"fmt"
	"time"
)

// This file decodes the pgoutput logical replication messages of protocol
// versions 1 to 4 (PostgreSQL 13-18), as PostgreSQL documents them in
// "Logical Replication Message Formats" and writes them in
// src/backend/replication/logical/proto.c.
//
// Every length is checked against what is left of the message: a
// malformed message is a *DecodeError naming the message type, its length
// and the offset, never a panic. Zero columns are valid everywhere (a
// table with no columns, or whose columns were all dropped). Byte slices
// in decoded messages (tuple data, logical message content) alias the
// input; copy what must outlive it.

// Message type bytes, the first byte of every pgoutput message.
const (
	MsgBegin            byte = 'B'
	MsgMessage          byte = 'M' // logical decoding message (pg_logical_emit_message)
	MsgCommit           byte = 'C'
	MsgOrigin           byte = 'O'
	MsgRelation         byte = 'R'
	MsgType             byte = 'Y'
	MsgInsert           byte = 'I'
	MsgUpdate           byte = 'U'
	MsgDelete           byte = 'D'
	MsgTruncate         byte = 'T'
	MsgStreamStart      byte = 'S' // protocol 2
	MsgStreamStop       byte = 'E'
	MsgStreamCommit     byte = 'c'
	MsgStreamAbort      byte = 'A'
	MsgBeginPrepare     byte = 'b' // protocol 3, two_phase
	MsgPrepare          byte = 'P'
	MsgCommitPrepared   byte = 'K'
	MsgRollbackPrepared byte = 'r'
	MsgStreamPrepare    byte = 'p'
)

var msgNames = map[byte]string{
	MsgBegin: "Begin", MsgMessage: "Message", MsgCommit: "Commit", MsgOrigin: "Origin",
	MsgRelation: "Relation", MsgType: "Type", MsgInsert: "Insert", MsgUpdate: "Update",
	MsgDelete: "Delete", MsgTruncate: "Truncate", MsgStreamStart: "Stream Start",
	MsgStreamStop: "Stream Stop", MsgStreamCommit: "Stream Commit", MsgStreamAbort: "Stream Abort",
	MsgBeginPrepare: "Begin Prepare", MsgPrepare: "Prepare", MsgCommitPrepared: "Commit Prepared",
	MsgRollbackPrepared: "Rollback Prepared", MsgStreamPrepare: "Stream Prepare",
}

// MessageName is the documented name of a message type byte, e.g. 'I' →
// "Insert"; "unknown" for others.
func MessageName(t byte) string {
	if n, ok := msgNames[t]; ok {
		return n
	}
	return "unknown"
}

// Datum kinds in tuple data.
const (
	DatumNull      byte = 'n'
	DatumUnchanged byte = 'u' // unchanged TOASTed value, not sent
	DatumText      byte = 't'
	DatumBinary    byte = 'b' // only when the binary option was given
)

// Datum is one column of tuple data. Data is set for DatumText (PostgreSQL's
// text form) and DatumBinary (the type's send form) and aliases the
// message.
type Datum struct {
	Kind byte
	Data []byte
}

// Tuple is a row: one Datum per published column, in column order. It may
// be empty.
type Tuple []Datum

// Message is a decoded pgoutput message, one of the *…Msg types below.
type Message interface {
	// Type is the message's type byte (MsgBegin, …).
	Type() byte
}

// BeginMsg starts a transaction that is sent whole at its commit.
type BeginMsg struct {
	FinalLSN   LSN // the commit record's LSN
	CommitTime time.Time
	XID        uint32
}

// CommitMsg ends the transaction opened by the last BeginMsg.
type CommitMsg struct {
	CommitLSN  LSN
	EndLSN     LSN
	CommitTime time.Time
}

// OriginMsg names the replication origin of the current transaction.
type OriginMsg struct {
	LSN  LSN // the commit LSN on the origin server
	Name string
}

// RelationColumn describes one published column of a relation.
type RelationColumn struct {
	Flags   byte // 1: part of the replica identity
	Name    string
	TypeOID uint32
	TypMod  int32
}

// Key reports whether the column is part of the replica identity.
func (c *RelationColumn) Key() bool { return c.Flags&1 != 0 }

// RelationMsg describes a relation before the first change that needs it
// and again after its shape changed. Namespace is empty for pg_catalog.
type RelationMsg struct {
	XID             uint32 // inside a stream only
	RelOID          uint32
	Namespace       string
	Name            string
	ReplicaIdentity byte // relreplident: d, n, f, i
	Columns         []RelationColumn
}

// TypeMsg describes a non-built-in type used by a relation's column.
type TypeMsg struct {
	XID       uint32 // inside a stream only
	TypeOID   uint32
	Namespace string // empty for pg_catalog
	Name      string
}

// InsertMsg is an inserted row.
type InsertMsg struct {
	XID    uint32 // inside a stream only
	RelOID uint32
	New    Tuple
}

// UpdateMsg is an updated row. OldKind is 'K' (Old holds the old replica
// identity key, other columns null), 'O' (Old is the whole old row, REPLICA
// IDENTITY FULL) or 0 (no old tuple: the key did not change, Old is nil).
type UpdateMsg struct {
	XID     uint32 // inside a stream only
	RelOID  uint32
	OldKind byte
	Old     Tuple
	New     Tuple
}

// DeleteMsg is a deleted row; OldKind is 'K' or 'O' as for UpdateMsg.
type DeleteMsg struct {
	XID     uint32 // inside a stream only
	RelOID  uint32
	OldKind byte
	Old     Tuple
}

// Truncate option bits.
const (
	TruncateCascade         byte = 1 << 0
	TruncateRestartIdentity byte = 1 << 1
)

// TruncateMsg is one TRUNCATE of one or more relations.
type TruncateMsg struct {
	XID             uint32 // inside a stream only
	RelOIDs         []uint32
	Cascade         bool
	RestartIdentity bool
}

// LogicalMsg is a logical decoding message (pg_logical_emit_message).
// Non-transactional ones arrive at once, outside any transaction.
type LogicalMsg struct {
	XID           uint32 // inside a stream only
	Transactional bool
	LSN           LSN
	Prefix        string
	Content       []byte // aliases the message
}

// StreamStartMsg opens a block of a streamed (in-progress) transaction's
// changes; until StreamStopMsg, changes carry the xid of their
// (sub)transaction.
type StreamStartMsg struct {
	XID          uint32
	FirstSegment bool
}

// StreamStopMsg closes the block opened by StreamStartMsg.
type StreamStopMsg struct{}

// StreamCommitMsg commits a streamed transaction.
type StreamCommitMsg struct {
	XID        uint32
	CommitLSN  LSN
	EndLSN     LSN
	CommitTime time.Time
}

// StreamAbortMsg aborts a streamed transaction (SubXID == XID) or one of
// its subtransactions. AbortLSN and AbortTime are sent only with streaming
// 'parallel' (protocol 4); otherwise they are zero and HasAbortInfo false.
type StreamAbortMsg struct {
	XID          uint32
	SubXID       uint32
	HasAbortInfo bool
	AbortLSN     LSN
	AbortTime    time.Time
}

// PreparedTx is what Begin Prepare, Prepare and Stream Prepare say of a
// two-phase transaction.
type PreparedTx struct {
	PrepareLSN  LSN
	EndLSN      LSN
	PrepareTime time.Time
	XID         uint32
	GID         string
}

// BeginPrepareMsg starts a prepared transaction (two_phase).
type BeginPrepareMsg struct{ PreparedTx }

// PrepareMsg ends the changes of a prepared transaction (two_phase).
type PrepareMsg struct{ PreparedTx }

// StreamPrepareMsg prepares a streamed transaction (two_phase).
type StreamPrepareMsg struct{ PreparedTx }

// CommitPreparedMsg is COMMIT PREPARED (two_phase).
type CommitPreparedMsg struct {
	CommitLSN  LSN
	EndLSN     LSN
	CommitTime time.Time
	XID        uint32
	GID        string
}

// RollbackPreparedMsg is ROLLBACK PREPARED (two_phase).
type RollbackPreparedMsg struct {
	PrepareEndLSN  LSN
	RollbackEndLSN LSN
	PrepareTime    time.Time
	RollbackTime   time.Time
	XID            uint32
	GID            string
}

func (*BeginMsg) Type() byte            { return MsgBegin }
func (*CommitMsg) Type() byte           { return MsgCommit }
func (*OriginMsg) Type() byte           { return MsgOrigin }
func (*RelationMsg) Type() byte         { return MsgRelation }
func (*TypeMsg) Type() byte             { return MsgType }
func (*InsertMsg) Type() byte           { return MsgInsert }
func (*UpdateMsg) Type() byte           { return MsgUpdate }
func (*DeleteMsg) Type() byte           { return MsgDelete }
func (*TruncateMsg) Type() byte         { return MsgTruncate }
func (*LogicalMsg) Type() byte          { return MsgMessage }
func (*StreamStartMsg) Type() byte      { return MsgStreamStart }
func (*StreamStopMsg) Type() byte       { return MsgStreamStop }
func (*StreamCommitMsg) Type() byte     { return MsgStreamCommit }
func (*StreamAbortMsg) Type() byte      { return MsgStreamAbort }
func (*BeginPrepareMsg) Type() byte     { return MsgBeginPrepare }
func (*PrepareMsg) Type() byte          { return MsgPrepare }
func (*StreamPrepareMsg) Type() byte    { return MsgStreamPrepare }
func (*CommitPreparedMsg) Type() byte   { return MsgCommitPrepared }
func (*RollbackPreparedMsg) Type() byte { return MsgRollbackPrepared }

// DecodeError is a message that does not follow the format.
type DecodeError struct {
	Type   byte // the message type byte (0 for an empty message)
	Len    int  // the message's length, type byte included
	Offset int  // where decoding stopped, from the type byte
	Reason string
}

func (e *DecodeError) Error() string {
	if e.Len == 0 {
		return "pgoutput: empty message"
	}
	return fmt.Sprintf("pgoutput: malformed %s message (type %s, %d bytes) at offset %d: %s",
		MessageName(e.Type), typeByte(e.Type), e.Len, e.Offset, e.Reason)
}

// typeByte shows a type byte as 'I', or as 0x07 when it is not printable.
func typeByte(b byte) string {
	if b >= 0x20 && b < 0x7f {
		return fmt.Sprintf("%q", rune(b))
	}
	return fmt.Sprintf("0x%02x", b)
}

// DecodeMessage decodes one pgoutput message (the data of an XLogData
// message). inStream says whether it arrived between Stream Start and
// Stream Stop: there Relation, Type, Insert, Update, Delete, Truncate and
// Message carry the xid of their (sub)transaction. An unknown type byte is
// an error naming it.
func DecodeMessage(data []byte, inStream bool) (Message, error) {
	if len(data) == 0 {
		return nil, &DecodeError{}
	}
	r := &reader{msg: data, off: 1}
	var m Message
	switch data[0] {
	case MsgBegin:
		m = &BeginMsg{FinalLSN: r.lsn("final LSN"), CommitTime: r.time("commit time"), XID: r.u32("xid")}
	case MsgCommit:
		r.flags(0, "flags")
		m = &CommitMsg{CommitLSN: r.lsn("commit LSN"), EndLSN: r.lsn("end LSN"), CommitTime: r.time("commit time")}
	case MsgOrigin:
		m = &OriginMsg{LSN: r.lsn("origin LSN"), Name: r.cstring("origin name")}
	case MsgRelation:
		m = r.relation(inStream)
	case MsgType:
		t := &TypeMsg{XID: r.streamXID(inStream)}
		t.TypeOID, t.Namespace, t.Name = r.u32("type OID"), r.cstring("namespace"), r.cstring("type name")
		m = t
	case MsgInsert:
		ins := &InsertMsg{XID: r.streamXID(inStream), RelOID: r.u32("relation OID")}
		if r.tag("tuple tag", 'N') != 0 {
			ins.New = r.tuple("new tuple")
		}
		m = ins
	case MsgUpdate:
		m = r.update(inStream)
	case MsgDelete:
		del := &DeleteMsg{XID: r.streamXID(inStream), RelOID: r.u32("relation OID")}
		del.OldKind = r.tag("old tuple tag", 'K', 'O')
		if del.OldKind != 0 {
			del.Old = r.tuple("old tuple")
		}
		m = del
	case MsgTruncate:
		m = r.truncate(inStream)
	case MsgMessage:
		lm := &LogicalMsg{XID: r.streamXID(inStream)}
		lm.Transactional = r.flags(1, "flags")&1 != 0
		lm.LSN, lm.Prefix = r.lsn("message LSN"), r.cstring("prefix")
		lm.Content = r.counted("content")
		m = lm
	case MsgStreamStart:
		s := &StreamStartMsg{XID: r.u32("xid")}
		s.FirstSegment = r.flags(1, "first segment") == 1
		m = s
	case MsgStreamStop:
		m = &StreamStopMsg{}
	case MsgStreamCommit:
		c := &StreamCommitMsg{XID: r.u32("xid")}
		r.flags(0, "flags")
		c.CommitLSN, c.EndLSN, c.CommitTime = r.lsn("commit LSN"), r.lsn("end LSN"), r.time("commit time")
		m = c
	case MsgStreamAbort:
		a := &StreamAbortMsg{XID: r.u32("xid"), SubXID: r.u32("subtransaction xid")}
		// With streaming 'parallel' the abort LSN and time follow; the
		// length tells, as nothing else comes after them.
		if r.left() > 0 {
			a.HasAbortInfo = true
			a.AbortLSN, a.AbortTime = r.lsn("abort LSN"), r.time("abort time")
		}
		m = a
	case MsgBeginPrepare:
		p := &BeginPrepareMsg{}
		r.prepared(&p.PreparedTx)
		m = p
	case MsgPrepare:
		p := &PrepareMsg{}
		r.flags(0, "flags")
		r.prepared(&p.PreparedTx)
		m = p
	case MsgStreamPrepare:
		p := &StreamPrepareMsg{}
		r.flags(0, "flags")
		r.prepared(&p.PreparedTx)
		m = p
	case MsgCommitPrepared:
		r.flags(0, "flags")
		m = &CommitPreparedMsg{CommitLSN: r.lsn("commit LSN"), EndLSN: r.lsn("end LSN"), CommitTime: r.time("commit time"),
			XID: r.u32("xid"), GID: r.cstring("gid")}
	case MsgRollbackPrepared:
		r.flags(0, "flags")
		m = &RollbackPreparedMsg{PrepareEndLSN: r.lsn("prepare end LSN"), RollbackEndLSN: r.lsn("rollback end LSN"),
			PrepareTime: r.time("prepare time"), RollbackTime: r.time("rollback time"), XID: r.u32("xid"), GID: r.cstring("gid")}
	default:
		return nil, fmt.Errorf("pgoutput: unknown message type %s (%d bytes)", typeByte(data[0]), len(data))
	}
	if r.err == nil && r.left() > 0 {
		r.fail("%d bytes left over after the message", r.left())
	}
	if r.err != nil {
		return nil, r.err
	}
	return m, nil
}

// reader reads big-endian fields from a message. The first failure sticks:
// later reads return zero values, so decoding code checks once at the end;
// loops check r.err to stop early.
type reader struct {
	msg []byte // the whole message, type byte first
	off int
	err *DecodeError
}

func (r *reader) left() int { return len(r.msg) - r.off }

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = &DecodeError{Type: r.msg[0], Len: len(r.msg), Offset: r.off, Reason: fmt.Sprintf(format, args...)}
	}
}

// take returns the next n bytes, or nil (and fails) when fewer are left.
func (r *reader) take(n int, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > r.left() {
		r.fail("%s needs %d bytes, %d left", what, n, r.left())
		return nil
	}
	b := r.msg[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

func (r *reader) u8(what string) byte {
	if b := r.take(1, what); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16(what string) uint16 {
	if b := r.take(2, what); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32(what string) uint32 {
	if b := r.take(4, what); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64(what string) uint64 {
	if b := r.take(8, what); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) lsn(what string) LSN { return LSN(r.u64(what)) }

// pgEpoch is PostgreSQL's epoch, 2000-01-01 UTC, in Unix seconds.
const pgEpoch = 946684800

// time reads a TimestampTz: microseconds since 2000-01-01.
func (r *reader) time(what string) time.Time {
	us := int64(r.u64(what))
	if r.err != nil {
		return time.Time{}
	}
	return time.Unix(pgEpoch+us/1e6, us%1e6*1e3)
}

// flags reads a byte whose bits outside known must be zero: an unknown
// flag would change the meaning of the message.
func (r *reader) flags(known byte, what string) byte {
	at := r.off
	f := r.u8(what)
	if f&^known != 0 {
		r.off = at
		r.fail("%s 0x%02x has unknown bits", what, f)
	}
	return f
}

// tag reads a tuple tag byte that must be one of want; 0 on failure.
func (r *reader) tag(what string, want ...byte) byte {
	at := r.off
	t := r.u8(what)
	if r.err != nil {
		return 0
	}
	for _, w := range want {
		if t == w {
			return t
		}
	}
	r.off = at
	r.fail("%s is %s, want one of %q", what, typeByte(t), want)
	return 0
}

// cstring reads a NUL-terminated string.
func (r *reader) cstring(what string) string {
	if r.err != nil {
		return ""
	}
	rest := r.msg[r.off:]
	for i, c := range rest {
		if c == 0 {
			r.off += i + 1
			return string(rest[:i])
		}
	}
	r.fail("%s has no terminating NUL in the %d bytes left", what, len(rest))
	return ""
}

// counted reads an Int32 length and that many bytes.
func (r *reader) counted(what string) []byte {
	at := r.off
	n := r.u32(what + " length")
	if r.err != nil {
		return nil
	}
	if rest := r.left(); uint64(n) > uint64(rest) {
		r.off = at
		r.fail("%s of %d bytes, %d left", what, n, rest)
		return nil
	}
	return r.take(int(n), what)
}

// streamXID reads the xid that messages inside a stream block carry.
func (r *reader) streamXID(inStream bool) uint32 {
	if !inStream {
		return 0
	}
	return r.u32("xid")
}

func (r *reader) relation(inStream bool) *RelationMsg {
	m := &RelationMsg{XID: r.streamXID(inStream), RelOID: r.u32("relation OID")}
	m.Namespace, m.Name = r.cstring("namespace"), r.cstring("relation name")
	m.ReplicaIdentity = r.u8("replica identity")
	at := r.off
	n := int(r.u16("column count"))
	if r.err != nil {
		return m
	}
	// Each column takes at least 10 bytes: never allocate for columns
	// that cannot be there.
	if rest := r.left(); n*10 > rest {
		r.off = at
		r.fail("%d columns cannot fit in the %d bytes left", n, rest)
		return m
	}
	m.Columns = make([]RelationColumn, n)
	for i := range m.Columns {
		c := &m.Columns[i]
		c.Flags = r.flags(1, "column flags")
		c.Name = r.cstring("column name")
		c.TypeOID = r.u32("column type OID")
		c.TypMod = int32(r.u32("column type modifier"))
		if r.err != nil {
			r.err.Reason = fmt.Sprintf("column %d: %s", i, r.err.Reason)
			return m
		}
	}
	return m
}

func (r *reader) update(inStream bool) *UpdateMsg {
	m := &UpdateMsg{XID: r.streamXID(inStream), RelOID: r.u32("relation OID")}
	t := r.tag("tuple tag", 'K', 'O', 'N')
	if t == 'K' || t == 'O' {
		m.OldKind = t
		m.Old = r.tuple("old tuple")
		t = r.tag("new tuple tag", 'N')
	}
	if t == 'N' {
		m.New = r.tuple("new tuple")
	}
	return m
}

func (r *reader) truncate(inStream bool) *TruncateMsg {
	m := &TruncateMsg{XID: r.streamXID(inStream)}
	at := r.off
	n := r.u32("relation count")
	opts := r.flags(TruncateCascade|TruncateRestartIdentity, "options")
	if r.err != nil {
		return m
	}
	if rest := r.left(); uint64(n)*4 > uint64(rest) {
		r.off = at
		r.fail("%d relations need %d bytes after the options, %d left", n, uint64(n)*4, rest)
		return m
	}
	m.Cascade, m.RestartIdentity = opts&TruncateCascade != 0, opts&TruncateRestartIdentity != 0
	m.RelOIDs = make([]uint32, n)
	for i := range m.RelOIDs {
		m.RelOIDs[i] = r.u32("relation OID")
	}
	return m
}

func (r *reader) prepared(p *PreparedTx) {
	p.PrepareLSN, p.EndLSN, p.PrepareTime = r.lsn("prepare LSN"), r.lsn("end LSN"), r.time("prepare time")
	p.XID, p.GID = r.u32("xid"), r.cstring("gid")
}

// tuple reads TupleData: an Int16 column count, then per column a kind
// byte and, for text and binary, an Int32 length and the bytes. Zero
// columns give an empty, non-nil Tuple.
func (r *reader) tuple(what string) Tuple {
	at := r.off
	n := int(r.u16(what + " column count"))
	if r.err != nil {
		return nil
	}
	if rest := r.left(); n > rest { // each column takes at least its kind byte
		r.off = at
		r.fail("%s: %d columns cannot fit in the %d bytes left", what, n, rest)
		return nil
	}
	t := make(Tuple, n)
	for i := range t {
		at := r.off
		switch k := r.u8("kind"); k {
		case DatumNull, DatumUnchanged:
			t[i].Kind = k
		case DatumText, DatumBinary:
			t[i] = Datum{Kind: k, Data: r.counted("value")}
		default:
			if r.err == nil {
				r.off = at
				r.fail("unknown tuple data kind %s", typeByte(k))
			}
		}
		if r.err != nil {
			r.err.Reason = fmt.Sprintf("%s column %d: %s", what, i, r.err.Reason)
			return nil
		}
	}
	return t
}

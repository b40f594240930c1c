// Package segment reads and writes btfu segments: zstd-compressed NDJSON
// files holding whole transactions in commit order, with the relation
// schema their changes need, so a restore needs nothing from the source.
//
// The format is a public contract that restores must read for years; it
// is specified in docs/segment-format.md. Change it only by adding a new
// FormatVersion and keeping the reader of every older one.
package segment

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pglogrepl"
)

// FormatVersion is the version this package writes.
const FormatVersion = 1

// LSN is a WAL position, written as PostgreSQL's text form ("0/16B3748").
type LSN = pglogrepl.LSN

// Header is the first line of every segment.
type Header struct {
	Format           int       `json:"btfu_segment"`
	Source           string    `json:"source"`
	SystemIdentifier string    `json:"system_identifier,omitempty"`
	Database         string    `json:"database,omitempty"`
	ChainID          int64     `json:"chain"`
	PrevEndLSN       TextLSN   `json:"prev_end_lsn"`
	CreatedAt        time.Time `json:"created_at"`
}

// Record types, the "t" field of each line after the header.
const (
	TypeRelation = "rel"    // relation schema, before the first change that needs it
	TypeBegin    = "begin"  // start of a transaction, with its commit LSN, end LSN and time
	TypeInsert   = "i"      // INSERT
	TypeUpdate   = "u"      // UPDATE
	TypeDelete   = "d"      // DELETE
	TypeTruncate = "trunc"  // TRUNCATE of one or more relations
	TypeMessage  = "msg"    // transactional logical message (pg_logical_emit_message)
	TypeDDL      = "ddl"    // a schema change derived by btfu (from Relation messages)
	TypeCommit   = "commit" // end of a transaction
)

// Prefixes of the logical messages btfu's DDL-capture trigger emits on the
// source (TypeMessage records; docs/segment-format.md describes them).
const (
	// DDLMessagePrefix: one DDL command, JSON with its tag, statement,
	// search_path and objects (v2 adds stmt, temp flags and, for CREATE
	// TABLE AS / SELECT INTO, the table's definition as "create").
	DDLMessagePrefix = "btfu.ddl"
	// RowsMessagePrefix: rows a CREATE TABLE AS or SELECT INTO wrote into
	// a table before it joined the publication (so not in the stream as
	// inserts), as record text, in messages of bounded size.
	RowsMessagePrefix = "btfu.rows"
	// MissedMessagePrefix: a DDL statement whose capture failed (the
	// statement itself went through); replay falls back to the changes
	// derived from relation messages for it.
	MissedMessagePrefix = "btfu.ddl_missed"
	// TableMessagePrefix: an existing table joined the publication
	// ("joined": covered from this transaction on) or left it ("left": it
	// lost its replica identity).
	TableMessagePrefix = "btfu.table"
	// OrderMessagePrefix: an empty message the trigger emits after its
	// last one. PostgreSQL orders a transactional message by its end LSN
	// and a row change by its start LSN; a row written right after the
	// trigger (in another subtransaction) ties with the trigger's last
	// message and may be decoded before it. The separator takes the tie.
	// The receiver drops it.
	OrderMessagePrefix = "btfu.order"
)

// Column describes one column of a relation.
type Column struct {
	Name    string `json:"name"`
	TypeOID uint32 `json:"type_oid"`
	Type    string `json:"type"`          // format_type() of the column, e.g. "numeric(10,2)"
	TypMod  int32  `json:"typmod"`        // atttypmod, -1 when none
	Key     bool   `json:"key,omitempty"` // part of the replica identity
}

// Relation is a table's shape as pgoutput last described it.
type Relation struct {
	OID             uint32   `json:"oid"`
	Schema          string   `json:"schema"`
	Name            string   `json:"name"`
	ReplicaIdentity string   `json:"ident"` // d(efault), f(ull), i(ndex), n(othing)
	Columns         []Column `json:"cols"`
}

// Value kinds. NULL and "unchanged TOAST value" are different things and
// stay different (DESIGN 2.4).
const (
	Null      byte = 'n'
	Text      byte = 't'
	Unchanged byte = 'u'
)

// Value is one column value in PostgreSQL's text form.
type Value struct {
	Kind byte
	Text string
}

// TextValue returns a text value.
func TextValue(s string) Value { return Value{Kind: Text, Text: s} }

// MarshalJSON writes null, a JSON string, {"toast":"unchanged"}, or
// {"b64":...} for text that is not valid UTF-8 (JSON cannot carry it).
func (v Value) MarshalJSON() ([]byte, error) {
	switch v.Kind {
	case Null, 0:
		return []byte("null"), nil
	case Unchanged:
		return []byte(`{"toast":"unchanged"}`), nil
	case Text:
		if utf8.ValidString(v.Text) {
			return json.Marshal(v.Text)
		}
		return json.Marshal(map[string]string{"b64": base64.StdEncoding.EncodeToString([]byte(v.Text))})
	}
	return nil, fmt.Errorf("segment: unknown value kind %q", v.Kind)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (v *Value) UnmarshalJSON(b []byte) error {
	switch {
	case string(b) == "null":
		*v = Value{Kind: Null}
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*v = Value{Kind: Text, Text: s}
		return nil
	}
	var obj struct {
		Toast string  `json:"toast"`
		B64   *string `json:"b64"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("segment: bad value %s: %w", b, err)
	}
	switch {
	case obj.Toast == "unchanged":
		*v = Value{Kind: Unchanged}
	case obj.B64 != nil:
		raw, err := base64.StdEncoding.DecodeString(*obj.B64)
		if err != nil {
			return fmt.Errorf("segment: bad base64 value: %w", err)
		}
		*v = Value{Kind: Text, Text: string(raw)}
	default:
		return fmt.Errorf("segment: unknown value %s", b)
	}
	return nil
}

// Record is one line after the header. Which fields are set depends on T;
// docs/segment-format.md lists them per type.
type Record struct {
	T string `json:"t"`

	// rel
	Relation *Relation `json:"rel,omitempty"`

	// begin, commit
	XID        uint32     `json:"xid,omitempty"`
	CommitLSN  TextLSN    `json:"lsn,omitempty"`
	EndLSN     TextLSN    `json:"end,omitempty"`
	CommitTime *time.Time `json:"time,omitempty"`
	Changes    int        `json:"n,omitempty"` // begin, commit: number of change records in the transaction

	// changes: ordinal within the transaction, from 1
	Ordinal int    `json:"o,omitempty"`
	RelOID  uint32 `json:"r,omitempty"`
	// Old is the old key ('K': replica identity columns, others null) or
	// the whole old row ('O': REPLICA IDENTITY FULL); OldKind says which.
	Old     []Value `json:"old,omitempty"`
	OldKind string  `json:"old_kind,omitempty"`
	New     []Value `json:"new,omitempty"`

	// trunc
	RelOIDs         []uint32 `json:"rels,omitempty"`
	Cascade         bool     `json:"cascade,omitempty"`
	RestartIdentity bool     `json:"restart_identity,omitempty"`

	// msg
	Prefix  string `json:"prefix,omitempty"`
	Content string `json:"content,omitempty"`

	// ddl
	SQL  string `json:"sql,omitempty"`
	Note string `json:"note,omitempty"`
}

// TextLSN is an LSN written in JSON as "X/Y"; the zero LSN is "0/0".
type TextLSN LSN

func (l TextLSN) MarshalText() ([]byte, error) { return []byte(LSN(l).String()), nil }

func (l *TextLSN) UnmarshalText(b []byte) error {
	v, err := pglogrepl.ParseLSN(string(b))
	if err != nil {
		return fmt.Errorf("segment: bad LSN %q", b)
	}
	*l = TextLSN(v)
	return nil
}

// LSNs of a record, as pglogrepl.LSN.
func (r *Record) LSN() LSN { return LSN(r.CommitLSN) }

// End is the end LSN of a begin or commit record.
func (r *Record) End() LSN { return LSN(r.EndLSN) }

// ErrCorrupt marks a segment that cannot be read as written.
var ErrCorrupt = errors.New("corrupt segment")

// ObjectKey is the artifact key of a segment of chain holding commits from
// first to end (its first commit LSN and its end LSN).
func ObjectKey(source string, chain int64, first, end LSN) string {
	return fmt.Sprintf("%s%016X-%016X.ndjson.zst", ChainPrefix(source, chain), uint64(first), uint64(end))
}

// ChainPrefix is the key prefix of every segment of a chain.
func ChainPrefix(source string, chain int64) string {
	return fmt.Sprintf("%s/segments/%d/", source, chain)
}

// ParseObjectKey reads the first commit LSN and end LSN from a key
// ObjectKey made; ok is false for any other name.
func ParseObjectKey(key string) (first, end LSN, ok bool) {
	i := strings.LastIndexByte(key, '/')
	name, found := strings.CutSuffix(key[i+1:], ".ndjson.zst")
	a, b, dash := strings.Cut(name, "-")
	if !found || !dash || len(a) != 16 || len(b) != 16 {
		return 0, 0, false
	}
	f, err1 := strconv.ParseUint(a, 16, 64)
	e, err2 := strconv.ParseUint(b, 16, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return LSN(f), LSN(e), true
}

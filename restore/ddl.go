package restore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/btfu/btfu/segment"
)

// DDLErrorPolicy says what replay does when captured DDL fails on the
// target.
type DDLErrorPolicy string

const (
	// DDLErrorStop stops the restore at the statement, naming its LSN and
	// text (the default: the restore would otherwise differ from the
	// source without saying where).
	DDLErrorStop DDLErrorPolicy = "stop"
	// DDLErrorSkip rolls the statement back, goes on, and lists it in the
	// summary.
	DDLErrorSkip DDLErrorPolicy = "skip"
)

// ParseDDLErrorPolicy reads --on-ddl-error.
func ParseDDLErrorPolicy(s string) (DDLErrorPolicy, error) {
	switch p := DDLErrorPolicy(strings.ToLower(strings.TrimSpace(s))); p {
	case "", DDLErrorStop:
		return DDLErrorStop, nil
	case DDLErrorSkip:
		return p, nil
	}
	return "", fmt.Errorf("--on-ddl-error=%q: want stop (the default: the restore stops at DDL that fails on the target) or skip (go on and list it)", s)
}

// SkippedDDL is captured DDL the restore does not hold: a statement that
// failed on the target and was skipped (DDLErrorSkip), or, with
// NotReproduced, a command run inside a function, procedure or DO block
// that btfu could not rebuild from the source's catalog (DESIGN 5: a
// restore reports what it could not reproduce).
type SkippedDDL struct {
	LSN       segment.LSN // commit LSN of its transaction
	Statement string      // NotReproduced: the command's tag and object
	Err       string
	// NotReproduced: never run on the target, whatever the error policy.
	NotReproduced bool
}

func (s SkippedDDL) String() string {
	return fmt.Sprintf("%s: %s: %s", s.LSN, cutStatement(s.Statement), s.Err)
}

// notReproducedWhy is the Err of a NotReproduced SkippedDDL.
const notReproducedWhy = "run inside a function, procedure or DO block, and btfu cannot rebuild it from the catalog; the restore lacks it"

// ddlMessage is one captured DDL command (segment.DDLMessagePrefix; see
// docs/segment-format.md).
type ddlMessage struct {
	V          int         `json:"v"`
	Tag        string      `json:"tag"`
	Query      string      `json:"query"`
	SearchPath string      `json:"search_path"`
	Stmt       string      `json:"stmt"`
	Objects    []ddlObject `json:"objects"`
	Dropped    []ddlObject `json:"dropped"`
	Create     string      `json:"create"`
	Skip       bool        `json:"skip"`
	// Nested (v4): run inside a function, procedure or DO block, so the
	// query holds no DDL of its own; Defs rebuild what the command made,
	// Unrebuilt names what they miss.
	Nested    bool     `json:"nested"`
	Defs      []string `json:"defs"`
	Unrebuilt []string `json:"unrebuilt"`
	// Concurrently (v5) is "start" for CREATE INDEX CONCURRENTLY noted at
	// its start; CIC on its ddl_command_end message names that statement.
	Concurrently string `json:"concurrently"`
	CIC          string `json:"cic"`
	// Session (v5): the source session's DateStyle, IntervalStyle and
	// TimeZone, which its statement's constants were read in.
	Session map[string]string `json:"session"`
	// Bounds (v5): partitions the command made or attached, with their
	// bounds as the source evaluated them.
	Bounds []partBound `json:"bounds"`
	// Relids (v5): for ALTER SCHEMA, the source OIDs of its tables.
	Relids []uint32 `json:"relids"`
	// Temp (v5): a GRANT or REVOKE on a temporary table.
	Temp bool `json:"temp"`
	// Fallback (v5): a top-level CREATE TABLE rebuilt from the catalog,
	// run where its text fails on the target (LIKE a temporary table).
	Fallback []string `json:"fallback"`
}

type partBound struct {
	Table  string `json:"table"`
	Parent string `json:"parent"`
	Bound  string `json:"bound"`
}

type ddlObject struct {
	Type     string `json:"type"`
	Identity string `json:"identity"`
	Schema   string `json:"schema"`
	Temp     bool   `json:"temp"`
	Original bool   `json:"original"`
}

// rowsMessage carries the rows CREATE TABLE AS or SELECT INTO wrote
// (segment.RowsMessagePrefix), each as its record's text.
type rowsMessage struct {
	Schema string   `json:"schema"`
	Table  string   `json:"table"`
	Rows   []string `json:"rows"`
}

// ddlState is what replay remembers of captured DDL within one source
// transaction: the client statement whose query text was applied. The
// trigger fires once per command, and one statement (CREATE TABLE with a
// serial column, a query string of several statements) may run several.
type ddlState struct {
	stmt string
	// rest: the statements of the client's query string that fire DDL
	// capture and no message took yet. Each message is about one (the
	// trigger fires once per statement); a message whose tag no
	// remaining statement has came from a function or an event trigger
	// run during another.
	rest []string
	// early: what DROP messages no statement named reported dropped
	// since the last statement taken. A sql_drop event trigger of the
	// application's that drops more during a DROP reports, at its own
	// end, what the outer DROP had dropped until then too, so the outer
	// statement's message may come with nothing.
	early []ddlObject
}

// droppedBy is what the statement m is about dropped: its own message's
// objects and those reported early.
func (d *ddlState) droppedBy(m *ddlMessage) []ddlObject {
	return originals(append(slices.Clone(d.early), m.Dropped...))
}

// take returns the next statement of the query string that a message of
// tag is about, and the statements before it (which no message was
// about: run in order too); found is false when no remaining statement
// has the tag.
func (d *ddlState) take(tag string) (stmt string, before []string, found bool) {
	for i, s := range d.rest {
		if tagMatches(tag, s) {
			before = d.rest[:i]
			d.rest = d.rest[i+1:]
			return s, before, true
		}
	}
	return "", nil, false
}

// tagMatches tells whether a statement is one a command tag names: the
// tag's words in order among its first words (CREATE TABLE in CREATE
// UNLOGGED TABLE IF NOT EXISTS …, CREATE TABLE AS in CREATE TABLE t (a)
// AS …).
func tagMatches(tag, stmt string) bool {
	tw, w := strings.Fields(strings.ToUpper(tag)), topLevelWords(stmt)
	if len(w) > len(tw)+6 {
		w = w[:len(tw)+6]
	}
	i := 0
	for _, x := range w {
		if i < len(tw) && x == tw[i] {
			i++
		}
	}
	return i == len(tw) && len(w) > 0 && w[0] == tw[0]
}

// captured keeps the statements of a query string that fire DDL capture:
// not those on the cluster's objects (roles, databases, tablespaces, role
// membership, ALTER SYSTEM) nor on event triggers, which fire none and
// which a restore of one database does not carry.
func captured(stmts []string) []string {
	var out []string
	for _, s := range stmts {
		if !clusterStatement(topLevelWords(s)) {
			out = append(out, s)
		}
	}
	return out
}

// clusterStatement tells a statement on the cluster's objects or on an
// event trigger, from its words.
func clusterStatement(w []string) bool {
	if len(w) < 2 {
		return false
	}
	global := func(kind string, next string) bool {
		switch kind {
		case "ROLE", "GROUP", "DATABASE", "TABLESPACE", "SYSTEM", "EVENT":
			return true
		case "USER":
			return next != "MAPPING"
		}
		return false
	}
	at := func(i int) string {
		if i < len(w) {
			return w[i]
		}
		return ""
	}
	switch w[0] {
	case "CREATE", "ALTER", "DROP":
		return global(w[1], at(2))
	case "COMMENT":
		return global(at(2), at(3))
	case "SECURITY", "GRANT", "REVOKE":
		on := slices.Index(w, "ON")
		if on < 0 {
			return w[0] != "SECURITY" // GRANT role TO role: membership
		}
		return global(at(on+1), at(on+2))
	}
	return false
}

// message applies a logical message: captured DDL and the rows of
// CREATE TABLE AS; other prefixes are the application's.
func (p *replayer) message(ctx context.Context, rec *segment.Record) error {
	switch rec.Prefix {
	case segment.DDLMessagePrefix:
		var m ddlMessage
		if err := json.Unmarshal([]byte(rec.Content), &m); err != nil {
			return fmt.Errorf("captured DDL message: %w", err)
		}
		// Capture rebuilds a query string of several statements too
		// (its first may be SET ROLE …): where it holds DDL, its text is
		// replayed. (A function called in such a string that runs DDL of
		// its own is then not rebuilt.)
		if m.Nested && len(ddlStatements(m.Query)) > 0 {
			m.Nested = false
		}
		// Derived DDL of the transaction is then left out: the captured
		// statements did it. Not for nested commands: their ALTER TABLE
		// rebuilds added columns only, and the derived type changes and
		// drops are idempotent.
		p.capturedDD = p.capturedDD || !m.Nested
		return p.capturedDDL(ctx, &m)
	case segment.RowsMessagePrefix:
		var m rowsMessage
		if err := json.Unmarshal([]byte(rec.Content), &m); err != nil {
			return fmt.Errorf("captured rows message: %w", err)
		}
		return p.capturedRows(ctx, &m)
	}
	return nil
}

func (p *replayer) capturedDDL(ctx context.Context, m *ddlMessage) error {
	if m.Skip {
		return nil // btfu's own publication
	}
	key := m.Stmt
	if key == "" { // v1: no statement key; the query text stands for it
		key = m.Query
	}
	if m.Concurrently == "start" {
		return p.concurrentIndex(ctx, m)
	}
	if key != p.ddl.stmt {
		p.ddl = ddlState{stmt: key, rest: captured(ddlStatements(m.Query))}
	}
	stmt, before, found := p.ddl.take(m.Tag)
	if !m.Nested {
		for _, s := range before {
			if err := p.apply(ctx, m, s, false); err != nil {
				return err
			}
		}
	}
	// Commands on temporary objects stay in their session (DESIGN 5):
	// replaying them would create objects the source never kept, or fail
	// on objects the base backup never held.
	if m.Temp || onlyTemp(m.Objects) || onlyTemp(originals(m.Dropped)) {
		p.tempDDL++
		return nil
	}
	if m.Create != "" {
		// CREATE TABLE AS / SELECT INTO: the definition, never the query
		// again (its rows follow as btfu.rows messages when published).
		return p.runDDL(ctx, "captured DDL", sessionOf(m), m.Create)
	}
	if m.Nested {
		return p.nestedDDL(ctx, m)
	}
	if m.CIC != "" {
		if done, err := p.checkConcurrentIndex(m); done || err != nil {
			return err
		}
	}
	if !found {
		// A command no statement of the query string names: run by a
		// function or an event trigger of the application's during
		// another. A DROP among them (a sql_drop event trigger that
		// drops more) goes IF EXISTS, which is no harm where the
		// statement's own text dropped it already.
		if dropped := originals(m.Dropped); strings.HasPrefix(m.Tag, "DROP ") && len(dropped) > 0 && droppable(dropped) {
			p.ddl.early = append(p.ddl.early, m.Dropped...)
			for _, s := range dropStatements(dropped) {
				if err := p.runDDL(ctx, "captured DDL", sessionOf(m), s); err != nil {
					return err
				}
			}
		}
		return p.fixBounds(ctx, m)
	}
	err := p.apply(ctx, m, stmt, true)
	p.ddl.early = nil
	if err != nil {
		return err
	}
	return p.fixBounds(ctx, m)
}

// apply replays one statement of a captured query string; mine says it
// is the statement m is about (else one before it that no message was
// about).
func (p *replayer) apply(ctx context.Context, m *ddlMessage, stmt string, mine bool) error {
	stmts := []string{stmt}
	dropped := originals(m.Dropped)
	if mine {
		dropped = p.ddl.droppedBy(m)
	}
	if mine && p.noOwner && dropOwned(stmt) {
		// Without owners, DROP OWNED BY names a role the restore does
		// not use: its objects go one by one, the rest of what it did
		// (privileges, default privileges) goes with the owners.
		stmts = dropStatements(droppableOnly(dropped))
		p.ownerDDL++
	} else if mine && strings.HasPrefix(m.Tag, "DROP ") && !dropOwned(stmt) && len(dropped) > 0 && (anyTemp(dropped) || droppable(dropped)) {
		// (Only a DROP: other statements drop objects too, as ATTACH
		// PARTITION drops the foreign key triggers it merges.) A DROP
		// goes object by object, IF EXISTS: what it named may be
		// temporary (never in the restore), or missing from the target
		// for a reason already reported (made where capture could not
		// see it, as EXPLAIN ANALYZE CREATE TABLE AS); either way the
		// restore ends without it, as the source did.
		stmts = dropStatements(dropped)
	}
	for _, s := range stmts {
		if isCreateAs(s) {
			continue // its own message carries its definition
		}
		if isOwnerChange(s) || (!p.noOwner && (dropOwned(s) || hasSchemaAuthorization(s))) {
			if err := p.ownerStatement(ctx, m, s); err != nil {
				return err
			}
			continue
		}
		if p.noOwner {
			s = withoutSchemaAuthorization(s, schemaNamed(m.Objects))
		}
		if mine && len(m.Fallback) > 0 {
			if err := p.tryDDL(ctx, sessionOf(m), s); err != nil {
				var re *ReplayError
				if errors.As(err, &re) {
					return err
				}
				// Its text fails here: what it made as the source's
				// catalog had it after the statement (a CREATE TABLE LIKE
				// a temporary table; a REFRESH of a materialized view made
				// where no event trigger fires, by EXPLAIN ANALYZE).
				p.notes.add(fmt.Sprintf("%s statements whose text fails on the target were rebuilt from the source's catalog instead", m.Tag))
				for _, f := range sequencesFirst(m.Fallback) {
					if err := p.runDDL(ctx, "rebuilt DDL", sessionOf(m), f); err != nil {
						return err
					}
				}
			}
			continue
		}
		if err := p.runDDL(ctx, "captured DDL", sessionOf(m), s); err != nil {
			return err
		}
		if from, to, ok := schemaRename(s); ok && mine {
			// The stream goes on naming the old schema for its tables.
			if p.renamed == nil {
				p.renamed = map[uint32][2]string{}
			}
			for _, oid := range m.Relids {
				p.renamed[oid] = [2]string{from, to}
			}
			p.renamedRels = nil
		}
	}
	return nil
}

// schemaRename reads ALTER SCHEMA old RENAME TO new.
func schemaRename(stmt string) (from, to string, ok bool) {
	ts := tokens(stmt)
	if len(ts) < 6 || ts[0].Upper != "ALTER" || ts[1].Upper != "SCHEMA" || ts[3].Upper != "RENAME" || ts[4].Upper != "TO" {
		return "", "", false
	}
	return identName(ts[2]), identName(ts[5]), true
}

// identName is an identifier token's name: a quoted one unquoted, a bare
// one folded to lower case, as PostgreSQL reads it.
func identName(t token) string {
	if t.Kind == tokQuoted {
		return strings.ReplaceAll(t.Text[1:len(t.Text)-1], `""`, `"`)
	}
	return strings.ToLower(t.Text)
}

// fixBounds gives the partitions a command made or attached the bounds
// the source evaluated: a bound may be an expression (TO (now())) that
// the target evaluated again, to another value. A partition whose bound
// differs is detached and attached again with the source's.
func (p *replayer) fixBounds(ctx context.Context, m *ddlMessage) error {
	for _, b := range m.Bounds {
		if err := p.send(ctx); err != nil {
			return err
		}
		var cur *string
		err := p.tx.QueryRow(ctx, "SELECT pg_catalog.pg_get_expr(c.relpartbound, c.oid) FROM pg_catalog.pg_class c WHERE c.oid = pg_catalog.to_regclass($1)", b.Table).Scan(&cur)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && (cur == nil || *cur == b.Bound)) {
			continue // as on the source, or not there (the statement was skipped)
		}
		if err != nil {
			return &ReplayError{LSN: p.cur.LSN(), Err: fmt.Errorf("read the bound of partition %s: %w", b.Table, err)}
		}
		for _, s := range []string{"ALTER TABLE " + b.Parent + " DETACH PARTITION " + b.Table, "ALTER TABLE " + b.Parent + " ATTACH PARTITION " + b.Table + " " + b.Bound} {
			if err := p.runDDL(ctx, "partition bound as the source evaluated it", nil, s); err != nil {
				return err
			}
		}
	}
	return nil
}

// ownerStatement replays a statement about owners: ALTER … OWNER TO,
// CREATE SCHEMA … AUTHORIZATION, DROP OWNED BY. With NoOwner the first is
// left out (the others come rewritten before). Otherwise it runs as
// written; where the target lacks the role it names, what does not need
// the role is done (the schema made without it, the role's objects
// dropped one by one), counted with the owners left out.
func (p *replayer) ownerStatement(ctx context.Context, m *ddlMessage, s string) error {
	if p.noOwner {
		p.ownerDDL++
		return nil
	}
	err := p.tryDDL(ctx, sessionOf(m), s)
	var re *ReplayError
	if errors.As(err, &re) {
		return err
	}
	if err != nil && !roleMissing(err) {
		return p.ddlFailed("captured DDL", s, err)
	}
	if err != nil {
		p.ownerDDL++
		if hasSchemaAuthorization(s) {
			return p.runDDL(ctx, "captured DDL", sessionOf(m), withoutSchemaAuthorization(s, schemaNamed(m.Objects)))
		}
	}
	if dropOwned(s) {
		// Also what the source's DROP OWNED dropped beside the role's
		// objects (an event trigger of the application's dropping more),
		// and, without the role, the role's objects one by one.
		for _, d := range dropStatements(droppableOnly(p.ddl.droppedBy(m))) {
			if err := p.runDDL(ctx, "captured DDL", sessionOf(m), d); err != nil {
				return err
			}
		}
	}
	return nil
}

// hasSchemaAuthorization tells CREATE SCHEMA … AUTHORIZATION.
func hasSchemaAuthorization(s string) bool {
	return withoutSchemaAuthorization(s, "x") != s
}

// droppableOnly keeps the objects dropStatements can drop.
func droppableOnly(objs []ddlObject) []ddlObject {
	var out []ddlObject
	for _, o := range objs {
		if droppable([]ddlObject{o}) {
			out = append(out, o)
		}
	}
	return out
}

// dropOwned tells DROP OWNED BY (whose message may come first from a
// DROP that an event trigger ran inside it, under another tag).
func dropOwned(stmt string) bool {
	w := topLevelWords(stmt)
	return len(w) > 2 && w[0] == "DROP" && w[1] == "OWNED"
}

// sequencesFirst puts the CREATE SEQUENCE statements of rebuilt DDL
// first: ALTER TABLE … ADD COLUMN … serial collects its command before
// the sequence's, and the column's default names the sequence.
func sequencesFirst(defs []string) []string {
	var seqs, rest []string
	for _, d := range defs {
		if w := topLevelWords(d); len(w) > 1 && w[0] == "CREATE" && w[1] == "SEQUENCE" {
			seqs = append(seqs, d)
		} else {
			rest = append(rest, d)
		}
	}
	return append(seqs, rest...)
}

// schemaNamed is the schema a command made, from its objects.
func schemaNamed(objs []ddlObject) string {
	for _, o := range objs {
		if o.Type == "schema" {
			return o.Identity
		}
	}
	return ""
}

// nestedDDL applies a command that ran inside a function, procedure or
// DO block: its query (DO …, SELECT f(), CALL p()) must not run again, its
// data changes are in the stream. What the command dropped goes with
// DROP … IF EXISTS, what it made comes from the statements the capture
// rebuilt from the catalog (each message carries its own: a DO block's
// commands share one statement key, and each is applied once, in order),
// and what it could not rebuild is listed in the summary.
func (p *replayer) nestedDDL(ctx context.Context, m *ddlMessage) error {
	stmts := append(dropStatements(originals(m.Dropped)), sequencesFirst(m.Defs)...)
	for _, s := range stmts {
		if err := p.runDDL(ctx, "rebuilt DDL", sessionOf(m), s); err != nil {
			return err
		}
	}
	for _, u := range m.Unrebuilt {
		p.skippedDDL = append(p.skippedDDL, SkippedDDL{LSN: p.cur.LSN(), Statement: u, Err: notReproducedWhy, NotReproduced: true})
	}
	return nil
}

// capturedRows inserts the rows a CREATE TABLE AS or SELECT INTO wrote.
func (p *replayer) capturedRows(ctx context.Context, m *rowsMessage) error {
	if len(m.Rows) == 0 || p.leftOut[m.Schema+"."+m.Table] {
		return nil
	}
	tbl := pgx.Identifier{m.Schema, m.Table}.Sanitize()
	// OFFSET 0 keeps the cast to one evaluation per row.
	sql := "INSERT INTO " + tbl + " SELECT (r).* FROM (SELECT t::" + tbl + " AS r FROM unnest($1::text[]) t OFFSET 0) s"
	if err := p.endRun(ctx); err != nil {
		return err
	}
	if err := p.send(ctx); err != nil {
		return err
	}
	// In a savepoint: a copy of a system catalog (CREATE TABLE AS SELECT
	// * FROM pg_class) holds values of types PostgreSQL never reads back.
	err := p.inSavepoint(ctx, func() error {
		_, err := p.tx.Exec(ctx, sql, m.Rows)
		return err
	})
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "0A000" && strings.HasPrefix(pgErr.Message, "cannot accept a value of type") {
		p.leaveOut(m.Schema, m.Table, "whose rows written by CREATE TABLE AS hold values it cannot take ("+pgErr.Message+")")
		return nil
	}
	if err != nil {
		return &ReplayError{LSN: p.cur.LSN(), Table: m.Schema + "." + m.Table, Err: fmt.Errorf("INSERT of %d rows written by CREATE TABLE AS: %w", len(m.Rows), err)}
	}
	p.rows += int64(len(m.Rows))
	return nil
}

// runDDL applies one captured statement in a savepoint, with the
// search_path of the session that ran it. A statement that cannot run in
// a transaction block (CREATE INDEX CONCURRENTLY, …) runs alone between
// two target transactions. On failure, the policy decides: stop with the
// statement's LSN and text, or roll it back, list it and go on.
func (p *replayer) runDDL(ctx context.Context, what string, sess *stmtSession, stmt string) error {
	err := p.tryDDL(ctx, sess, stmt)
	var re *ReplayError
	var pgErr *pgconn.PgError
	if err == nil || errors.As(err, &re) || !errors.As(err, &pgErr) {
		return err // the replay's own failure, not the statement's
	}
	return p.ddlFailed(what, stmt, err)
}

// tryDDL applies one statement as runDDL does and returns its failure on
// the target as it is (the replay's own failures as a ReplayError).
func (p *replayer) tryDDL(ctx context.Context, sess *stmtSession, stmt string) error {
	if err := p.endRun(ctx); err != nil {
		return err
	}
	if err := p.send(ctx); err != nil {
		return err
	}
	// Schema changes may change how rows are matched.
	p.typeMatch, p.noInputCols, p.relKinds = nil, nil, nil
	if changes, event := changesTriggerState(stmt); changes && p.guard != nil {
		// The statement acts on the triggers' true state.
		if err := p.guard.restore(ctx, p.tx, event); err != nil {
			return &ReplayError{LSN: p.cur.LSN(), Err: err}
		}
	}
	err := p.inSession(ctx, sess, stmt)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "25001" { // active_sql_transaction
		err = p.outsideTransaction(ctx, sess, stmt)
	}
	if errors.As(err, &pgErr) && pgErr.Code == "42501" && sess != nil && sess.role != "" && !p.noOwner && p.roles[sess.role] {
		// insufficient_privilege: the target's role lacks what the
		// source's had (made without its attributes or grants, as a role
		// of the same name made by hand). As the restoring role instead,
		// which owns what the statement makes, rather than leaving it out.
		// CURRENT_USER naming a role in it still names the source's.
		alt := *sess
		alt.role = ""
		as := withRoleNamed(stmt, sess.role)
		if err = p.inSession(ctx, &alt, as); errors.As(err, &pgErr) && pgErr.Code == "25001" {
			err = p.outsideTransaction(ctx, &alt, as)
		}
		if err == nil {
			p.notes.add(fmt.Sprintf("statements the source ran as role %s that the target's %s may not run (it lacks an attribute or privilege the source's had: make it as the source has it, e.g. pg_dumpall --roles-only) ran as the restoring role, which owns what they made", sess.role, sess.role))
		}
	}
	if errors.As(err, &pgErr) && pgErr.Code == "42704" && strings.HasPrefix(pgErr.Message, "tablespace ") {
		// The target lacks the source's tablespace: the object goes to
		// the target's default, as pg_restore --no-tablespaces puts it.
		if alt, ok := withoutTablespace(stmt); ok {
			err = p.inSession(ctx, sess, alt)
			if err == nil {
				p.notes.add(pgErr.Message + " on the target: objects made in the default tablespace")
			}
		} else if strings.Contains(strings.ToUpper(stmt), "SET TABLESPACE") {
			p.notes.add(pgErr.Message + " on the target: objects moved there on the source stay in the default tablespace")
			err = nil
		}
	}
	if p.guard != nil {
		// The statement may have made or enabled a trigger that would
		// fire during replay.
		if gerr := p.guard.quiet(ctx, p.tx); gerr != nil {
			return &ReplayError{LSN: p.cur.LSN(), Err: gerr}
		}
	}
	if err == nil {
		if enumValueAdded(stmt) {
			// A value added to an enum cannot be used before its
			// transaction commits; the source used it in a later one.
			// Replay goes on in a new target transaction: more of the
			// source's may follow (a DO block's commands, a query string
			// of several statements).
			if err := p.flush(ctx); err != nil {
				return err
			}
			tx, err := p.conn.Begin(ctx)
			if err != nil {
				return err
			}
			p.tx = p.settled(tx)
		}
		return nil
	}
	return err
}

// stmtSession is what of the source's session a captured statement
// depends on: its search_path, and the settings that change how its
// constants read (a timestamptz default without a zone, a date literal).
type stmtSession struct {
	searchPath string
	settings   map[string]string // DateStyle, IntervalStyle, TimeZone
	role       string            // the role that ran it (current_user), "" if not known
}

// sessionOf is the session a captured message ran in.
func sessionOf(m *ddlMessage) *stmtSession {
	s := &stmtSession{searchPath: m.SearchPath, settings: map[string]string{}, role: m.Session["role"]}
	for _, k := range sessionSettings {
		if v := m.Session[k]; v != "" {
			s.settings[k] = v
		}
	}
	return s
}

// sessionSettings are the settings replay takes from the source's session
// for a captured statement.
var sessionSettings = []string{"DateStyle", "IntervalStyle", "TimeZone"}

// set applies sess (is local: for the transaction) on q, or, with back,
// the replay session's own values again.
func (p *replayer) setSession(ctx context.Context, q querier, sess *stmtSession, back, local bool) error {
	if p.session == nil {
		// The replay session's own values, read before any is changed.
		p.session = map[string]string{}
		for _, k := range append([]string{"search_path"}, sessionSettings...) {
			var v string
			if err := q.QueryRow(ctx, "SELECT pg_catalog.current_setting($1)", k).Scan(&v); err != nil {
				return err
			}
			p.session[k] = v
		}
	}
	names, values := []string{"search_path"}, []string{sess.searchPath}
	if back {
		values[0] = p.session["search_path"]
	}
	// As the role that ran it on the source (the objects it makes are
	// that role's, functions that check current_user see it), where the
	// target has the role and the restoring role may act as it.
	if sess.role != "" && !p.noOwner {
		ok, err := p.canBe(ctx, q, sess.role)
		if err != nil {
			return err
		}
		if ok {
			v := sess.role
			if back {
				v = "none"
			}
			names, values = append(names, "role"), append(values, v)
		}
	}
	for k, v := range sess.settings {
		if back {
			v = p.session[k]
		}
		names, values = append(names, k), append(values, v)
	}
	_, err := q.Exec(ctx, "SELECT pg_catalog.set_config(n, v, $3) FROM unnest($1::text[], $2::text[]) AS s(n, v)", names, values, local)
	return err
}

// canBe tells whether replay can run statements as role, and notes once
// when it cannot.
func (p *replayer) canBe(ctx context.Context, q querier, role string) (bool, error) {
	if ok, known := p.roles[role]; known {
		return ok, nil
	}
	var ok bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)
		AND pg_catalog.pg_has_role(current_user, $1, 'MEMBER')`, role).Scan(&ok); err != nil {
		return false, err
	}
	if p.roles == nil {
		p.roles = map[string]bool{}
	}
	p.roles[role] = ok
	if !ok {
		p.notes.add(fmt.Sprintf("statements the source ran as role %s ran as the restoring role: the target lacks %s, or the restoring role may not act as it", role, role))
	}
	return ok, nil
}

// roleMissing tells a failure naming a role the target lacks.
func roleMissing(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42704" && strings.HasPrefix(pgErr.Message, "role ")
}

// inSession runs a captured statement in a savepoint of the open target
// transaction, in its source session's settings, and puts the replay
// session's back after it.
func (p *replayer) inSession(ctx context.Context, sess *stmtSession, stmt string) error {
	return p.inSavepoint(ctx, func() error {
		if sess != nil {
			if err := p.setSession(ctx, p.tx, sess, false, true); err != nil {
				return err
			}
		}
		if _, err := p.tx.Exec(ctx, stmt); err != nil {
			return err
		}
		if sess != nil {
			return p.setSession(ctx, p.tx, sess, true, true)
		}
		return nil
	})
}

// ddlFailed applies the error policy to a statement that failed on the
// target: stop with its LSN and text, or list it and go on.
func (p *replayer) ddlFailed(what, stmt string, err error) error {
	if p.onDDLError == DDLErrorSkip {
		p.skippedDDL = append(p.skippedDDL, SkippedDDL{LSN: p.cur.LSN(), Statement: what + ": " + stmt, Err: err.Error()})
		return nil
	}
	return &ReplayError{LSN: p.cur.LSN(), Err: fmt.Errorf("%s %q failed on the target: %w (restore with --on-ddl-error=skip to go on without it; the summary lists what was skipped)", what, cutStatement(stmt), err)}
}

// concurrentIndex replays a CREATE INDEX CONCURRENTLY where the source
// committed its first phase: concurrently, between two target
// transactions, so a build that fails on the same rows leaves an invalid
// index as it did on the source (later statements use it). Whether the
// source's build succeeded shows later: its ddl_command_end message names
// this statement (checkConcurrentIndex).
func (p *replayer) concurrentIndex(ctx context.Context, m *ddlMessage) error {
	if err := p.endRun(ctx); err != nil {
		return err
	}
	if err := p.send(ctx); err != nil {
		return err
	}
	if p.cic == nil {
		p.cic = map[string]error{}
	}
	var failed error
	for _, s := range ddlStatements(m.Query) {
		if err := p.outsideTransaction(ctx, sessionOf(m), s); err != nil {
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) {
				return &ReplayError{LSN: p.cur.LSN(), Err: fmt.Errorf("captured DDL %q: %w", cutStatement(s), err)}
			}
			failed = fmt.Errorf("%q: %w", cutStatement(s), err)
		}
	}
	p.cic[m.Stmt] = failed
	p.typeMatch, p.noInputCols, p.relKinds = nil, nil, nil
	if p.guard != nil {
		if err := p.guard.quiet(ctx, p.tx); err != nil {
			return &ReplayError{LSN: p.cur.LSN(), Err: err}
		}
	}
	return nil
}

// checkConcurrentIndex takes the ddl_command_end message of a CREATE
// INDEX CONCURRENTLY noted at its start: the source's build succeeded, so
// one that failed on the target is a failure of the restore. It says
// whether the message was handled so.
func (p *replayer) checkConcurrentIndex(m *ddlMessage) (bool, error) {
	failed, seen := p.cic[m.CIC]
	if !seen {
		return false, nil // its start was before the base backup: replayed as any statement
	}
	delete(p.cic, m.CIC)
	if failed != nil {
		return true, p.ddlFailed("captured DDL", m.Query, fmt.Errorf("CREATE INDEX CONCURRENTLY succeeded on the source but failed on the target: %w", failed))
	}
	return true, nil
}

// notes collects what a restore did differently from the source, once
// each, with how often.
type notes struct {
	order []string
	count map[string]int
}

func (n *notes) add(s string) {
	if n.count == nil {
		n.count = map[string]int{}
	}
	if n.count[s] == 0 {
		n.order = append(n.order, s)
	}
	n.count[s]++
}

func (n *notes) list() []string {
	var out []string
	for _, s := range n.order {
		if c := n.count[s]; c > 1 {
			s = fmt.Sprintf("%s (%d statements)", s, c)
		}
		out = append(out, s)
	}
	return out
}

// inSavepoint runs f in a savepoint of the open target transaction and
// rolls it back when f fails, so the transaction goes on.
func (p *replayer) inSavepoint(ctx context.Context, f func() error) error {
	if _, err := p.tx.Exec(ctx, "SAVEPOINT btfu_ddl"); err != nil {
		return err
	}
	if err := f(); err != nil {
		if _, rerr := p.tx.Exec(ctx, "ROLLBACK TO SAVEPOINT btfu_ddl"); rerr != nil {
			return fmt.Errorf("%w (and rolling it back: %v)", err, rerr)
		}
		return err
	}
	_, err := p.tx.Exec(ctx, "RELEASE SAVEPOINT btfu_ddl")
	return err
}

// outsideTransaction commits what replay holds, runs stmt on its own and
// opens the next target transaction.
func (p *replayer) outsideTransaction(ctx context.Context, sess *stmtSession, stmt string) error {
	if err := p.flush(ctx); err != nil {
		return err
	}
	if sess != nil {
		if err := p.setSession(ctx, p.conn, sess, false, false); err != nil {
			return err
		}
	}
	_, err := p.conn.Exec(ctx, stmt)
	if sess != nil {
		if rerr := p.setSession(ctx, p.conn, sess, true, false); rerr != nil && err == nil {
			err = rerr
		}
	}
	tx, berr := p.conn.Begin(ctx)
	if berr != nil {
		return berr
	}
	p.tx = p.settled(tx)
	return err
}

func onlyTemp(objs []ddlObject) bool {
	for _, o := range objs {
		if !o.Temp {
			return false
		}
	}
	return len(objs) > 0
}

func anyTemp(objs []ddlObject) bool {
	for _, o := range objs {
		if o.Temp {
			return true
		}
	}
	return false
}

// originals are the objects a DROP named (not those it took with it).
func originals(objs []ddlObject) []ddlObject {
	var out []ddlObject
	for _, o := range objs {
		if o.Original {
			out = append(out, o)
		}
	}
	return out
}

// dropTypes are the object types whose DROP statement is "DROP <type>
// <identity>" with pg_event_trigger_dropped_objects' identity.
var dropTypes = map[string]bool{
	"table": true, "view": true, "materialized view": true, "sequence": true, "index": true,
	"foreign table": true, "type": true, "domain": true, "function": true, "procedure": true,
	"aggregate": true, "schema": true,
	// their identity is "name on schema.table", as DROP TRIGGER takes it
	"trigger": true, "policy": true, "rule": true,
}

// droppable tells whether dropStatements can drop every one of objs.
func droppable(objs []ddlObject) bool {
	for _, o := range objs {
		if !dropTypes[o.Type] && o.Type != "composite type" {
			return false
		}
	}
	return true
}

// dropStatements drop the permanent objects of a DROP that named
// temporary ones too, or of a DROP run inside a function or DO block.
// (probe's nestedSQL lists the other types as not reproduced.)
func dropStatements(objs []ddlObject) []string {
	var out []string
	for _, o := range objs {
		if o.Temp {
			continue
		}
		typ := o.Type
		if typ == "composite type" {
			typ = "type"
		}
		if !dropTypes[typ] {
			continue
		}
		out = append(out, "DROP "+strings.ToUpper(typ)+" IF EXISTS "+o.Identity+" CASCADE")
	}
	return out
}

// isCreateAs tells a CREATE TABLE … AS statement (its table comes from
// the captured definition instead): AS outside parentheses, quotes and
// comments, after CREATE [GLOBAL|LOCAL] [TEMP|TEMPORARY|UNLOGGED] TABLE.
// (AS inside the column list, as in GENERATED ALWAYS AS, does not count.)
func isCreateAs(s string) bool {
	w := topLevelWords(s)
	if len(w) < 2 || w[0] != "CREATE" {
		return false
	}
	i := 1
	if i < len(w) && (w[i] == "GLOBAL" || w[i] == "LOCAL") {
		i++
	}
	if i < len(w) && (w[i] == "TEMP" || w[i] == "TEMPORARY" || w[i] == "UNLOGGED") {
		i++
	}
	if i >= len(w) || w[i] != "TABLE" {
		return false
	}
	for _, x := range w[i+1:] {
		if x == "AS" {
			return true
		}
	}
	return false
}

// enumValueAdded tells ALTER TYPE … ADD VALUE.
func enumValueAdded(s string) bool {
	w := topLevelWords(s)
	if len(w) < 4 || w[0] != "ALTER" || w[1] != "TYPE" {
		return false
	}
	for i := 2; i+1 < len(w); i++ {
		if w[i] == "ADD" && w[i+1] == "VALUE" {
			return true
		}
	}
	return false
}

func cutStatement(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		i := 300
		for i > 0 && s[i]&0xC0 == 0x80 {
			i--
		}
		s = s[:i] + "…"
	}
	return s
}

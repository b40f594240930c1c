package restore

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// querier is what replay needs of a connection or a transaction.
type querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// triggerGuard keeps triggers (and rules) from firing during replay
// (DESIGN 4.5).
// session_replication_role = replica silences ordinary triggers, but
// triggers and event triggers set ENABLE ALWAYS still fire (their effects
// on the source are already in the stream: they would happen twice), and
// those set ENABLE REPLICA fire only then (their effects never happened on
// the source). Replay disables them and puts their state back at the
// end; a replayed statement that changes a trigger's state sees the true
// state first.
type triggerGuard struct {
	table map[uint32]byte // pg_trigger oid → tgenabled to put back
	event map[uint32]byte // pg_event_trigger oid → evtenabled to put back
	rule  map[uint32]byte // pg_rewrite oid → ev_enabled to put back (rules obey the same setting)
}

func newTriggerGuard() *triggerGuard {
	return &triggerGuard{table: map[uint32]byte{}, event: map[uint32]byte{}, rule: map[uint32]byte{}}
}

// quiet disables every trigger that would fire in replica mode and
// remembers its state. Event triggers go first, so the ALTER TABLEs that
// follow fire none.
func (g *triggerGuard) quiet(ctx context.Context, q querier) error {
	type trig struct {
		oid   uint32
		state string
		sql   string
	}
	collect := func(sql string) ([]trig, error) {
		rows, err := q.Query(ctx, sql)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(r pgx.CollectableRow) (trig, error) {
			var t trig
			err := r.Scan(&t.oid, &t.state, &t.sql)
			return t, err
		})
	}
	events, err := collect(`SELECT oid, evtenabled::text, format('ALTER EVENT TRIGGER %I DISABLE', evtname)
		FROM pg_event_trigger WHERE evtenabled IN ('A', 'R')`)
	if err != nil {
		return fmt.Errorf("list event triggers that fire during replay: %w", err)
	}
	for _, t := range events {
		if _, err := q.Exec(ctx, t.sql); err != nil {
			return fmt.Errorf("%s: %w", t.sql, err)
		}
		g.event[t.oid] = t.state[0]
	}
	tables, err := collect(`SELECT t.oid, t.tgenabled::text, format('ALTER TABLE ONLY %I.%I DISABLE TRIGGER %I', n.nspname, c.relname, t.tgname)
		FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE t.tgenabled IN ('A', 'R')`)
	if err != nil {
		return fmt.Errorf("list triggers that fire during replay: %w", err)
	}
	for _, t := range tables {
		if _, err := q.Exec(ctx, t.sql); err != nil {
			return fmt.Errorf("%s: %w", t.sql, err)
		}
		g.table[t.oid] = t.state[0]
	}
	rules, err := collect(`SELECT r.oid, r.ev_enabled::text, format('ALTER TABLE %I.%I DISABLE RULE %I', n.nspname, c.relname, r.rulename)
		FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE r.ev_enabled IN ('A', 'R') AND r.rulename <> '_RETURN'`)
	if err != nil {
		return fmt.Errorf("list rules that fire during replay: %w", err)
	}
	for _, t := range rules {
		if _, err := q.Exec(ctx, t.sql); err != nil {
			return fmt.Errorf("%s: %w", t.sql, err)
		}
		g.rule[t.oid] = t.state[0]
	}
	return nil
}

// restore puts back the state of the triggers quiet disabled that still
// exist (replayed DDL may have dropped or renamed them), and forgets
// them. events says whether event triggers are put back too.
func (g *triggerGuard) restore(ctx context.Context, q querier, events bool) error {
	var stmts []string
	collect := func(sql string, m map[uint32]byte) error {
		if len(m) == 0 {
			return nil
		}
		oids, states := make([]uint32, 0, len(m)), make([]string, 0, len(m))
		for oid, st := range m {
			oids, states = append(oids, oid), append(states, string(st))
		}
		rows, err := q.Query(ctx, sql, oids, states)
		if err != nil {
			return err
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		stmts = append(stmts, got...)
		return err
	}
	if events {
		if err := collect(`SELECT format('ALTER EVENT TRIGGER %I ENABLE %s', e.evtname, CASE w.state WHEN 'A' THEN 'ALWAYS' ELSE 'REPLICA' END)
			FROM pg_event_trigger e JOIN unnest($1::oid[], $2::text[]) w(oid, state) ON w.oid = e.oid`, g.event); err != nil {
			return fmt.Errorf("event triggers to enable again: %w", err)
		}
		g.event = map[uint32]byte{}
	}
	if err := collect(`SELECT format('ALTER TABLE ONLY %I.%I ENABLE %s TRIGGER %I', n.nspname, c.relname, CASE w.state WHEN 'A' THEN 'ALWAYS' ELSE 'REPLICA' END, t.tgname)
		FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN unnest($1::oid[], $2::text[]) w(oid, state) ON w.oid = t.oid`, g.table); err != nil {
		return fmt.Errorf("triggers to enable again: %w", err)
	}
	g.table = map[uint32]byte{}
	if err := collect(`SELECT format('ALTER TABLE %I.%I ENABLE %s RULE %I', n.nspname, c.relname, CASE w.state WHEN 'A' THEN 'ALWAYS' ELSE 'REPLICA' END, r.rulename)
		FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class JOIN pg_namespace n ON n.oid = c.relnamespace
		JOIN unnest($1::oid[], $2::text[]) w(oid, state) ON w.oid = r.oid`, g.rule); err != nil {
		return fmt.Errorf("rules to enable again: %w", err)
	}
	g.rule = map[uint32]byte{}
	for _, s := range stmts {
		if _, err := q.Exec(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

// changesTriggerState tells a statement that enables or disables
// triggers or rules (ALTER TABLE … ENABLE/DISABLE [ALWAYS|REPLICA]
// TRIGGER|RULE, ALTER
// EVENT TRIGGER … ENABLE/DISABLE), and whether it is about event
// triggers.
func changesTriggerState(stmt string) (changes, event bool) {
	w := topLevelWords(stmt)
	if len(w) < 3 || w[0] != "ALTER" {
		return false, false
	}
	if w[1] == "EVENT" && w[2] == "TRIGGER" {
		return true, true
	}
	for i := 1; i+1 < len(w); i++ {
		target := func(x string) bool { return x == "TRIGGER" || x == "RULE" }
		if (w[i] == "ENABLE" || w[i] == "DISABLE") && (target(w[i+1]) || (i+2 < len(w) && target(w[i+2]))) {
			return true, false
		}
	}
	return false, false
}

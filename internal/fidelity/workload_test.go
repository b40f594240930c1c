package fidelity

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// A transaction the workload runs: steps in order; a step inside a
// savepoint group may be rolled back to it. rollback aborts the whole
// transaction at the end.
type txn struct {
	steps    []string
	rollback bool
	ddl      func() // applied to the model after a successful commit
}

// gen builds random transactions against the model.
type gen struct {
	m *model
	r *rand.Rand
}

func (g *gen) next(allowDDL bool) txn {
	r := g.r
	if allowDDL && r.IntN(40) == 0 {
		return g.ddl()
	}
	var tx txn
	n := 1 + r.IntN(4)
	for i := 0; i < n; i++ {
		t := g.m.pick(r)
		if r.IntN(6) == 0 {
			// A savepoint group, rolled back half of the time.
			sp := fmt.Sprintf("sp%d", i)
			tx.steps = append(tx.steps, "SAVEPOINT "+sp)
			tx.steps = append(tx.steps, g.stmt(t), g.stmt(g.m.pick(r)))
			if r.IntN(2) == 0 {
				tx.steps = append(tx.steps, "ROLLBACK TO SAVEPOINT "+sp)
			} else {
				tx.steps = append(tx.steps, "RELEASE SAVEPOINT "+sp)
			}
			continue
		}
		tx.steps = append(tx.steps, g.stmt(t))
	}
	tx.rollback = r.IntN(15) == 0
	return tx
}

func (g *gen) stmt(t table) string {
	r := g.r
	switch p := r.IntN(100); {
	case p < 2:
		return "TRUNCATE " + t.name
	case p < 6:
		return g.bulk(t)
	case p < 45:
		return g.insert(t, 1+r.IntN(5))
	case p < 80:
		return g.update(t)
	case t.full() && p < 85:
		// One row of several that may be equal.
		return fmt.Sprintf("DELETE FROM %s WHERE ctid = (SELECT ctid FROM %s WHERE n %% %d = %d LIMIT 1)", t.name, t.name, 5+r.IntN(20), r.IntN(5))
	default:
		return fmt.Sprintf("DELETE FROM %s WHERE n %% %d = %d", t.name, 20+r.IntN(60), r.IntN(20))
	}
}

func (g *gen) insert(t table, rows int) string {
	r := g.r
	names := []string{"n"}
	if t.kind == kindComposite {
		names = append(names, "region")
	}
	if t.toast {
		names = append(names, "big")
	}
	for _, c := range t.cols {
		names = append(names, c.name)
	}
	var vals []string
	for i := 0; i < rows; i++ {
		var v []string
		switch {
		case t.kind == kindComposite:
			v = append(v, fmt.Sprint(r.IntN(1000000)))
		case r.IntN(5) == 0:
			v = append(v, "(nextval('app.tickets') % 1000)::int")
		default:
			v = append(v, fmt.Sprint(r.IntN(1000)))
		}
		if t.kind == kindComposite {
			v = append(v, quote([]string{"eu", "us", "ap", randText(r)}[r.IntN(4)]))
		}
		if t.toast {
			v = append(v, g.big())
		}
		for _, c := range t.cols {
			v = append(v, literal(r, c.typ))
		}
		vals = append(vals, "("+strings.Join(v, ", ")+")")
		if t.full() && r.IntN(3) == 0 {
			// A duplicate row: replay must change one of the two when the
			// source changes one (DESIGN 4.5).
			vals = append(vals, vals[len(vals)-1])
		}
	}
	s := fmt.Sprintf("INSERT INTO %s (%s) VALUES %s", t.name, strings.Join(names, ", "), strings.Join(vals, ", "))
	if t.kind == kindComposite {
		s += " ON CONFLICT DO NOTHING"
	}
	return s
}

// big is a TOASTed value (stored out of line: STORAGE EXTERNAL), or NULL.
func (g *gen) big() string {
	if g.r.IntN(4) == 0 {
		return "NULL"
	}
	return fmt.Sprintf("repeat(md5('%d'), %d)", g.r.IntN(1e6), 70+g.r.IntN(150))
}

func (g *gen) bulk(t table) string {
	// Replaying a change to a table without a key scans the table (as a
	// native subscriber does before PostgreSQL 16): keep those small.
	rows := 100 + g.r.IntN(700)
	if !t.hasID() && t.kind != kindComposite {
		rows = 20 + g.r.IntN(80)
	}
	names, exprs := []string{"n"}, []string{"(g % 1000)::int"}
	if t.kind == kindComposite {
		names, exprs = append(names, "region"), append(exprs, fmt.Sprintf("'bulk%d-' || g", g.r.IntN(1e6)))
	}
	if t.toast {
		names, exprs = append(names, "big"), append(exprs, "CASE WHEN g % 40 = 0 THEN repeat(md5(g::text), 200) END")
	}
	for _, c := range t.cols {
		names, exprs = append(names, c.name), append(exprs, bulkExpr(c.typ))
	}
	s := fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM generate_series(1, %d) g", t.name, strings.Join(names, ", "), strings.Join(exprs, ", "), rows)
	if t.kind == kindComposite {
		s += " ON CONFLICT DO NOTHING"
	}
	return s
}

func (g *gen) update(t table) string {
	r := g.r
	where := fmt.Sprintf("n %% %d = %d", 10+r.IntN(40), r.IntN(10))
	if t.hasID() && r.IntN(6) == 0 {
		// Key updates; in the partitioned table rows move to another
		// partition. Ids stay unique: they differ modulo 1000000.
		return fmt.Sprintf("UPDATE %s SET id = id + 1000000 WHERE id %% %d = %d AND id < 3000000", t.name, 7+r.IntN(20), r.IntN(7))
	}
	var sets []string
	if r.IntN(3) == 0 || len(t.cols) == 0 {
		sets = append(sets, "n = n + 1")
		if t.kind == kindComposite {
			// n is part of the key: move it far to stay unique.
			sets[0] = "n = n + 1000000"
			where += " AND n < 1000000"
		}
	}
	if t.toast && r.IntN(4) == 0 {
		sets = append(sets, "big = "+g.big())
	}
	for _, c := range t.cols {
		if r.IntN(2) == 0 {
			sets = append(sets, c.name+" = "+literal(r, c.typ))
		}
	}
	if len(sets) == 0 {
		sets = append(sets, t.cols[0].name+" = "+literal(r, t.cols[0].typ))
	}
	if t.full() && r.IntN(2) == 0 {
		// One row of several that may be equal.
		where = fmt.Sprintf("ctid = (SELECT ctid FROM %s WHERE %s LIMIT 1)", t.name, where)
	}
	return fmt.Sprintf("UPDATE %s SET %s WHERE %s", t.name, strings.Join(sets, ", "), where)
}

// ddl changes the schema: a column added or dropped, or a new table.
func (g *gen) ddl() txn {
	r := g.r
	g.m.mu.Lock()
	defer g.m.mu.Unlock()
	t := g.m.tables[r.IntN(len(g.m.tables))]
	switch p := r.IntN(3); {
	case p == 0 && len(t.cols) > 1:
		i := r.IntN(len(t.cols))
		name := t.cols[i].name
		return txn{steps: []string{fmt.Sprintf("ALTER TABLE %s DROP COLUMN %s", t.name, name)}, ddl: func() {
			g.m.mu.Lock()
			defer g.m.mu.Unlock()
			for j, c := range t.cols {
				if c.name == name {
					t.cols = append(t.cols[:j], t.cols[j+1:]...)
					break
				}
			}
		}}
	case p == 1 && g.m.created < 3:
		g.m.created++
		nt := &table{name: fmt.Sprintf("app.new%d", g.m.created), kind: kindPK, cols: []column{{"c0", "text"}, {"c1", colTypes[r.IntN(len(colTypes))]}}}
		return txn{steps: []string{
			fmt.Sprintf("CREATE TABLE %s (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n int NOT NULL, c0 text, c1 %s)", nt.name, nt.cols[1].typ),
			g.insert(*nt, 3),
		}, ddl: func() {
			g.m.mu.Lock()
			defer g.m.mu.Unlock()
			g.m.tables = append(g.m.tables, nt)
		}}
	default:
		t.added++
		c := column{name: fmt.Sprintf("d%d", t.added), typ: colTypes[r.IntN(len(colTypes))]}
		def := ""
		if lit := literal(r, c.typ); lit != "NULL" && r.IntN(2) == 0 {
			def = " DEFAULT " + lit
		}
		return txn{steps: []string{fmt.Sprintf("ALTER TABLE %s ADD COLUMN %s %s%s", t.name, c.name, c.typ, def)}, ddl: func() {
			g.m.mu.Lock()
			defer g.m.mu.Unlock()
			t.cols = append(t.cols, c)
		}}
	}
}

// tolerated are errors concurrent random transactions cause on their own:
// deadlocks, a column or table another transaction just changed, a
// composite key already taken. Anything else is a bug in the generator
// (and would silently shrink what the test covers).
var tolerated = map[string]bool{"40P01": true, "40001": true, "42703": true, "42P01": true, "23505": true}

type stats struct {
	committed, rolledBack, failed atomic.Int64
	mu                            sync.Mutex
	unexpected                    []string
}

// runTxn runs tx on conn; a failing statement rolls the transaction back.
func runTxn(ctx context.Context, conn *pgx.Conn, tx txn, st *stats) error {
	if _, err := conn.Exec(ctx, "BEGIN"); err != nil {
		return err
	}
	for _, s := range tx.steps {
		if _, err := conn.Exec(ctx, s); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if _, rerr := conn.Exec(ctx, "ROLLBACK"); rerr != nil {
				return rerr
			}
			st.failed.Add(1)
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || !tolerated[pe.Code] {
				st.mu.Lock()
				st.unexpected = append(st.unexpected, fmt.Sprintf("%v\n    in: %.300s", err, s))
				st.mu.Unlock()
			}
			return nil
		}
	}
	end := "COMMIT"
	if tx.rollback {
		end = "ROLLBACK"
	}
	if _, err := conn.Exec(ctx, end); err != nil {
		return err
	}
	if tx.rollback {
		st.rolledBack.Add(1)
		return nil
	}
	st.committed.Add(1)
	if tx.ddl != nil {
		tx.ddl()
	}
	return nil
}

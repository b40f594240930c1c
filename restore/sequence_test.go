package restore

import (
	"testing"

	"github.com/btfu/btfu/internal/pgtest"
)

// A restored sequence never hands out a value the source had handed out
// (DESIGN 4.6), also when it descends (the column's furthest value is its
// smallest) or cycles (the column holds values from before the wrap,
// which say nothing of where the sequence is).
func TestSequencesThatDescendOrCycle(t *testing.T) {
	e := capturingWith(t, nil, `
CREATE TABLE down_t (id int PRIMARY KEY, v text);
CREATE SEQUENCE down INCREMENT BY -1 MAXVALUE -1 START WITH -1 OWNED BY down_t.id;
ALTER TABLE down_t ALTER COLUMN id SET DEFAULT nextval('down');
CREATE TABLE slots (n int, v text); ALTER TABLE slots REPLICA IDENTITY FULL;
CREATE SEQUENCE slot_seq MINVALUE 1 MAXVALUE 5 CYCLE OWNED BY slots.n;
ALTER TABLE slots ALTER COLUMN n SET DEFAULT nextval('slot_seq');
INSERT INTO down_t(v) VALUES ('a');`)
	source.Exec(t, e.db, `INSERT INTO down_t(v) VALUES ('b'), ('c'), ('d'); INSERT INTO slots(v) SELECT 'r' || g FROM generate_series(1, 7) g`)
	m := e.mark(t, "sequences")
	e.waitStored(t, m)
	e.waitSequences(t, m.lsn)
	db, _, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	// The source handed out -1 … -4, and 1 … 5, 1, 2.
	if got := pgtest.QueryValue[int64](t, target, db, "SELECT nextval('down')"); got >= -4 {
		t.Errorf("descending sequence hands out %d again", got)
	}
	if got := pgtest.QueryValue[int64](t, target, db, "SELECT nextval('slot_seq')"); got != 3 {
		t.Errorf("cycled sequence hands out %d, the source's next is 3", got)
	}
}

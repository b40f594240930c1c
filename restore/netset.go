package restore

import (
	"errors"
	"strings"

	"github.com/btfu/btfu/segment"
)

// Set-based replay (DESIGN 4.5, issue 14): within one target transaction
// the changes of a table that replay can prove order-free are reduced to
// their net effect per replica identity key, then applied with a few
// statements per table (setapply.go). This file is the reduction alone.
//
// Per key, the changes in source order fold into one net change:
//
//	insert + updates  → one insert of the final row
//	update + update   → one update of the last image; a column the later
//	                    update left unchanged (TOAST 'u') keeps the
//	                    earlier update's value, or is not set at all
//	insert + delete   → nothing
//	update + delete   → delete
//	delete + insert   → delete, then insert of the final row
//
// A sequence the source cannot have produced on a target that matches it
// (an insert of a key present, an update or delete of a key absent) is
// errNotNet: the caller applies the changes one by one instead, so the
// failure names its row as per-row replay does.

// errNotNet: the changes do not reduce (see above).
var errNotNet = errors.New("changes do not reduce to a net effect")

// netRow is one key's net change.
type netRow struct {
	// keyVals holds the key as the first change named it (the columns
	// of the relation marked Key; others unused).
	keyVals []segment.Value
	// existed: the first change was an update or a delete, so the row
	// was on the target before the buffered changes.
	existed bool
	// present: the row exists after them.
	present bool
	// inserted: the row was (re)inserted by the buffered changes; vals
	// is then a whole row.
	inserted bool
	// vals is the row after the changes (present only); a column still
	// Unchanged was never sent (unchanged TOAST): its target value stays.
	vals  []segment.Value
	owned bool // vals is this row's own copy (merges write into it)
}

// netTable is one table's buffered changes, reduced.
type netTable struct {
	rel  *segment.Relation
	name string // schema.name, for messages
	keys []int  // indexes of the key columns
	// rows indexes order by key. It is built at the table's first
	// update or delete: until then every change was an insert of a key
	// not seen before (two inserts of one key fail on the target's
	// unique index as they would one by one), and a batch of inserts
	// alone, the bulk load, never hashes a key.
	rows map[string]*netRow
	// order: keys in the order first seen, so the net statements and a
	// fallback keep a stable order.
	order []*netRow
	// changes: how many changes were folded in
	changes int
	slab    []netRow // netRows are allocated from here, many at a time
	pool    *netPool // where slab and order come from and go back to (nil: none)
	slabs   [][]netRow
}

// netPool keeps the netRows and order lists of finished batches for the
// next ones: a bulk load reduces millions of rows, and the collector's
// work grows with what replay allocates.
type netPool struct {
	slabs  [][]netRow
	orders [][]*netRow
}

const netSlab = 256 // netRows per slab

// put takes back what t used; nothing may refer to t's rows any more.
func (p *netPool) put(t *netTable) {
	if p == nil {
		return
	}
	for _, s := range t.slabs {
		if len(p.slabs) < netMax/netSlab+8 {
			clear(s)
			p.slabs = append(p.slabs, s)
		}
	}
	if cap(t.order) > 0 && len(p.orders) < 4 {
		clear(t.order)
		p.orders = append(p.orders, t.order[:0])
	}
	t.slabs, t.order, t.slab = nil, nil, nil
}

// newRow is a zero netRow, registered under key k once rows is built.
func (t *netTable) newRow(k string) *netRow {
	if len(t.slab) == 0 {
		if p := t.pool; p != nil && len(p.slabs) > 0 {
			t.slab, p.slabs = p.slabs[len(p.slabs)-1], p.slabs[:len(p.slabs)-1]
		} else {
			t.slab = make([]netRow, netSlab)
		}
		t.slabs = append(t.slabs, t.slab)
	}
	r := &t.slab[0]
	t.slab = t.slab[1:]
	if t.rows != nil {
		t.rows[k] = r
	}
	t.order = append(t.order, r)
	return r
}

// index builds rows from the inserts buffered so far; false when two of
// them hold one key (the target refuses the second, as it would one by
// one, so the change that needs the index is not reduced).
func (t *netTable) index() bool {
	rows := make(map[string]*netRow, len(t.order)+16)
	for _, r := range t.order {
		k, _ := t.keyOf(r.keyVals)
		if rows[k] != nil {
			return false
		}
		rows[k] = r
	}
	t.rows = rows
	return true
}

func newNetTable(rel *segment.Relation, pool *netPool) *netTable {
	t := &netTable{rel: rel, name: rel.Schema + "." + rel.Name, pool: pool}
	if pool != nil && len(pool.orders) > 0 {
		t.order, pool.orders = pool.orders[len(pool.orders)-1], pool.orders[:len(pool.orders)-1]
	}
	for i, c := range rel.Columns {
		if c.Key {
			t.keys = append(t.keys, i)
		}
	}
	return t
}

// keyOf is the map key of a row image: its key columns' text, each
// preceded by its length (values never hold NUL, but lengths keep the
// key unambiguous whatever they hold).
func (t *netTable) keyOf(vals []segment.Value) (string, bool) {
	if len(t.keys) == 1 {
		// One key column: its text is the key (no copy).
		i := t.keys[0]
		if i >= len(vals) || vals[i].Kind != segment.Text {
			return "", false
		}
		return vals[i].Text, true
	}
	var b strings.Builder
	for _, i := range t.keys {
		if i >= len(vals) || vals[i].Kind != segment.Text {
			return "", false // a NULL or unchanged key: not reducible
		}
		v := vals[i].Text
		n := len(v)
		b.WriteByte(byte(n >> 24))
		b.WriteByte(byte(n >> 16))
		b.WriteByte(byte(n >> 8))
		b.WriteByte(byte(n))
		b.WriteString(v)
	}
	return b.String(), true
}

// add folds one change into the table's net effect. rec must be an
// insert, an update that keeps its key (no old key sent) or a delete of
// a keyed table; anything else, or a sequence that cannot happen on a
// matching target, is errNotNet and leaves t as it was.
func (t *netTable) add(rec *segment.Record) error {
	if len(t.keys) == 0 {
		return errNotNet
	}
	var img []segment.Value
	switch rec.T {
	case segment.TypeInsert:
		img = rec.New
	case segment.TypeUpdate:
		if rec.Old != nil {
			return errNotNet // the key changed (or FULL): order matters
		}
		img = rec.New
	case segment.TypeDelete:
		if rec.OldKind == "O" {
			return errNotNet
		}
		img = rec.Old
	default:
		return errNotNet
	}
	if len(img) != len(t.rel.Columns) {
		return errNotNet
	}
	k, ok := t.keyOf(img)
	if !ok {
		return errNotNet
	}
	if rec.T == segment.TypeInsert {
		for _, v := range img {
			if v.Kind == segment.Unchanged {
				return errNotNet // an insert always sends every column
			}
		}
	}
	if t.rows == nil && rec.T != segment.TypeInsert && !t.index() {
		return errNotNet
	}
	var r *netRow
	if t.rows != nil {
		r = t.rows[k]
	}
	switch rec.T {
	case segment.TypeInsert:
		if r == nil {
			r = t.newRow(k)
			r.keyVals = img
		} else if r.present {
			return errNotNet // insert of a key present: a unique violation per row
		}
		r.present, r.inserted, r.vals, r.owned = true, true, img, false
	case segment.TypeUpdate:
		if r == nil {
			r = t.newRow(k)
			r.keyVals, r.existed, r.present, r.vals = img, true, true, img
			break
		}
		if !r.present {
			return errNotNet // update of a key deleted: matches no row per row
		}
		if !r.owned {
			r.vals = append([]segment.Value(nil), r.vals...)
			r.owned = true
		}
		for i, v := range img {
			if v.Kind != segment.Unchanged {
				r.vals[i] = v
			}
		}
	case segment.TypeDelete:
		if r == nil {
			r = t.newRow(k)
			r.keyVals, r.existed = img, true
			break
		}
		if !r.present {
			return errNotNet // delete of a key deleted
		}
		r.present, r.inserted, r.vals, r.owned = false, false, nil, false
	}
	t.changes++
	return nil
}

// netSet is a table's net changes grouped for statements: the keys to
// delete (first), the rows to update per set of columns, then the rows
// to insert per set of columns. Each group keeps first-seen order.
type netSet struct {
	deletes []*netRow
	updates []netGroup
	inserts []netGroup
}

// netGroup is rows changing the same columns (cols: indexes into the
// relation's columns).
type netGroup struct {
	cols []int
	rows []*netRow
	copy []copyPart // an insert group's rows as COPY text (render)
}

// copyPart is COPY text of rows rows.
type copyPart struct {
	data []byte
	rows int
}

// net groups t's rows into statements.
func (t *netTable) net() netSet {
	var s netSet
	upd, ins := map[string]int{}, map[string]int{}
	// Rows come in runs of one set of columns: the last mask and its
	// group are tried first.
	var mask, lastUpd, lastIns []byte
	nUpd, nIns := -1, -1
	group := func(gs *[]netGroup, idx map[string]int, last *[]byte, lastN *int, r *netRow, skipKey bool) {
		mask = mask[:0]
		set := 0
		for i, v := range r.vals {
			if v.Kind == segment.Unchanged || (skipKey && t.rel.Columns[i].Key) {
				mask = append(mask, '0')
				continue
			}
			mask = append(mask, '1')
			set++
		}
		if skipKey && set == 0 {
			return // an update that sets nothing: per-row replay sends nothing either
		}
		n := *lastN
		if n < 0 || string(mask) != string(*last) {
			var ok bool
			if n, ok = idx[string(mask)]; !ok {
				n = len(*gs)
				idx[string(mask)] = n
				cols := make([]int, 0, set)
				for i, m := range mask {
					if m == '1' {
						cols = append(cols, i)
					}
				}
				g := netGroup{cols: cols}
				if n == 0 { // usually the only one
					g.rows = make([]*netRow, 0, len(t.order))
				}
				*gs = append(*gs, g)
			}
			*last, *lastN = append((*last)[:0], mask...), n
		}
		(*gs)[n].rows = append((*gs)[n].rows, r)
	}
	for _, r := range t.order {
		switch {
		case r.existed && (!r.present || r.inserted):
			s.deletes = append(s.deletes, r)
			if r.present {
				group(&s.inserts, ins, &lastIns, &nIns, r, false)
			}
		case r.present && r.inserted:
			group(&s.inserts, ins, &lastIns, &nIns, r, false)
		case r.present:
			group(&s.updates, upd, &lastUpd, &nUpd, r, true)
		}
	}
	return s
}

package restore

import (
	"errors"
	"hash/maphash"
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
//
// A REPLICA IDENTITY FULL table has no key: a row is known by all its
// values, as per-row replay matches it (match.go). Rows are indexed by a
// hash of every value (a hit is compared value by value: a hash shared
// by other values is errNotNet), and an update moves the row to its new
// values; rows with the same values are interchangeable (the target
// cannot tell them apart either). Two rows of one batch with the same
// values (a duplicate made or changed in the batch) are errNotNet;
// duplicates already on the target are not: each statement picks one
// target row per row it names, as per-row replay's LIMIT 1 does, and
// counts them (setapply.go).

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

// merge sets r's values that an update sent (unchanged TOAST keeps the
// value r has), in r's own copy.
func (r *netRow) merge(img []segment.Value) {
	if !r.owned {
		r.vals = append([]segment.Value(nil), r.vals...)
		r.owned = true
	}
	for i, v := range img {
		if v.Kind != segment.Unchanged {
			r.vals[i] = v
		}
	}
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
	// full: REPLICA IDENTITY FULL (keys holds every column). A row's
	// keyVals is then the row as the target holds it before the batch,
	// and byValues indexes it (from the table's first update or delete,
	// as rows) under the hash of its values after the changes so far:
	// a hash, not the values, so that the index holds no copy of them.
	full     bool
	byValues map[uint64]*netRow
	// guard: a full table's columns in a unique index of the target. An
	// update changing one is not reduced: applied before the deletes and
	// inserts around it, it could collide with them (a swap).
	guard []int
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
	t := &netTable{rel: rel, name: rel.Schema + "." + rel.Name, pool: pool, full: rel.ReplicaIdentity == "f"}
	if pool != nil && len(pool.orders) > 0 {
		t.order, pool.orders = pool.orders[len(pool.orders)-1], pool.orders[:len(pool.orders)-1]
	}
	for i, c := range rel.Columns {
		if c.Key || t.full {
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

// fullHash is the hash a REPLICA IDENTITY FULL row is indexed by: of
// every value with its kind and length, a value Unchanged in over (nil:
// none) being base's. A variable: a test makes every row share one.
var fullHash = hashValues

var fullSeed = maphash.MakeSeed()

func hashValues(base, over []segment.Value) uint64 {
	var h maphash.Hash
	h.SetSeed(fullSeed)
	for i := range base {
		v := base[i]
		if over != nil && over[i].Kind != segment.Unchanged {
			v = over[i]
		}
		n := len(v.Text)
		h.Write([]byte{byte(v.Kind), byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
		h.WriteString(v.Text)
	}
	return h.Sum64()
}

// holds tells whether r's values now are vals: an index hit is the row
// only when they are.
func (r *netRow) holds(vals []segment.Value) bool {
	if !r.present {
		return false
	}
	for i, want := range vals {
		have := r.vals[i]
		if have.Kind == segment.Unchanged {
			have = r.keyVals[i] // not sent since the batch began
		}
		if have != want {
			return false
		}
	}
	return true
}

// add folds one change into the table's net effect. rec must be an
// insert, an update that keeps its key (no old key sent) or a delete of
// a keyed table, or a change of a REPLICA IDENTITY FULL table (addFull);
// anything else, or a sequence that cannot happen on a matching target,
// is errNotNet and leaves t as it was.
func (t *netTable) add(rec *segment.Record) error {
	if len(t.keys) == 0 {
		return errNotNet
	}
	if t.full {
		return t.addFull(rec)
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
		r.merge(img)
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

// movedRow marks, in a REPLICA IDENTITY FULL table's index, values a
// row of the batch had before it changed. A change of a row with those
// values is of another row: a duplicate of it on the target (errNotNet,
// so that no two rows of a statement are named by the same values).
var movedRow = &netRow{}

// indexFull builds byValues from the inserts buffered so far; false when
// two of them share a hash (duplicates, most likely).
func (t *netTable) indexFull() bool {
	m := make(map[uint64]*netRow, len(t.order)+16)
	for _, r := range t.order {
		h := fullHash(r.vals, nil)
		if m[h] != nil {
			return false
		}
		m[h] = r
	}
	t.byValues = m
	return true
}

// addFull folds a change of a REPLICA IDENTITY FULL table: an update or
// delete names its row by the whole old row (OldKind "O").
func (t *netTable) addFull(rec *segment.Record) error {
	n := len(t.rel.Columns)
	old, img := rec.Old, rec.New
	switch rec.T {
	case segment.TypeInsert:
		if len(img) != n {
			return errNotNet
		}
		for _, v := range img {
			if v.Kind == segment.Unchanged {
				return errNotNet // an insert always sends every column
			}
		}
		var r *netRow
		var h uint64
		if t.byValues != nil { // else a run of inserts alone: not indexed
			h = fullHash(img, nil)
			if r = t.byValues[h]; r != nil && r != movedRow && r.present {
				return errNotNet // a duplicate of a row of the batch
			}
		}
		if r == nil || r == movedRow {
			r = t.newRow("")
			r.keyVals = img
			if t.byValues != nil {
				t.byValues[h] = r
			}
		}
		// A row deleted in the batch with the same hash takes the
		// values: its delete stands (existed), the values are inserted.
		r.present, r.inserted, r.vals, r.owned = true, true, img, false
		t.changes++
		return nil
	case segment.TypeUpdate:
		if len(img) != n {
			return errNotNet
		}
	case segment.TypeDelete:
	default:
		return errNotNet
	}
	if rec.OldKind != "O" || len(old) != n {
		return errNotNet
	}
	// An old row of NULLs alone names no value to match by.
	named := false
	for _, v := range old {
		if v.Kind == segment.Unchanged {
			return errNotNet // a value not sent: nothing to match by
		}
		named = named || v.Kind == segment.Text
	}
	if !named {
		return errNotNet
	}
	if t.byValues == nil && !t.indexFull() {
		return errNotNet
	}
	ho := fullHash(old, nil)
	r := t.byValues[ho]
	if r != nil && !r.holds(old) {
		return errNotNet // a duplicate of a row deleted or changed, or another row's hash
	}
	switch rec.T {
	case segment.TypeUpdate:
		for _, i := range t.guard {
			if img[i].Kind != segment.Unchanged && img[i] != old[i] {
				return errNotNet // a unique index's value changes
			}
		}
		// The row's values now: old's, as r's were, with img's.
		hn := fullHash(old, img)
		if e := t.byValues[hn]; e != nil && e != r && e.present {
			return errNotNet // two rows of the batch with the same values
		}
		if r == nil {
			r = t.newRow("")
			r.keyVals, r.existed, r.present, r.vals = old, true, true, img
		} else {
			r.merge(img)
		}
		// A later change of a row with the old values is one of its
		// duplicates on the target: one by one.
		t.byValues[ho] = movedRow
		t.byValues[hn] = r
	case segment.TypeDelete:
		if r == nil {
			r = t.newRow("")
			r.keyVals, r.existed = old, true
			t.byValues[ho] = r
			break
		}
		r.present, r.inserted, r.vals, r.owned = false, false, nil, false
	}
	t.changes++
	return nil
}

// netSet is a table's net changes grouped for statements: the rows to
// delete (first), the rows to update per set of columns, then the rows
// to insert per set of columns. Each group keeps first-seen order.
// checks are rows of a REPLICA IDENTITY FULL table changed back to their
// values before the batch: nothing to set, but the target must hold them,
// as the updates one by one would have found them (looked for first).
type netSet struct {
	checks  []netGroup
	deletes []netGroup
	updates []netGroup
	inserts []netGroup
}

// netGroup is rows whose statement is the same (indexes into the
// relation's columns): the columns set (an update's) or inserted (cols),
// and those a row is named by (match: a keyed table's key; a REPLICA
// IDENTITY FULL table's columns not NULL in keyVals, the others being
// NULL).
type netGroup struct {
	cols  []int
	match []int
	rows  []*netRow
	copy  []copyPart // an insert group's rows as COPY text (render)
}

// copyPart is COPY text of rows rows.
type copyPart struct {
	data []byte
	rows int
}

// A row's statement, as a byte per column (net's masks).
const (
	maskSet   = 1 // set or inserted
	maskMatch = 2 // named by its value
)

// grouper puts rows into groups by mask. Rows come in runs of one mask:
// the last one's group is tried first.
type grouper struct {
	idx  map[string]int
	last []byte
	n    int // the last mask's group, when last is set
	hint int // rows the first group is made for
}

func (g *grouper) add(gs *[]netGroup, mask []byte, r *netRow) {
	if g.last == nil || string(mask) != string(g.last) {
		n, ok := g.idx[string(mask)]
		if !ok {
			if g.idx == nil {
				g.idx = map[string]int{}
			}
			n = len(*gs)
			g.idx[string(mask)] = n
			var grp netGroup
			for i, m := range mask {
				if m&maskSet != 0 {
					grp.cols = append(grp.cols, i)
				}
				if m&maskMatch != 0 {
					grp.match = append(grp.match, i)
				}
			}
			if n == 0 { // usually the only one
				grp.rows = make([]*netRow, 0, g.hint)
			}
			*gs = append(*gs, grp)
		}
		g.last, g.n = append(g.last[:0], mask...), n
	}
	(*gs)[g.n].rows = append((*gs)[g.n].rows, r)
}

// net groups t's rows into statements.
func (t *netTable) net() netSet {
	var s netSet
	var del, chk grouper
	upd, ins := grouper{hint: len(t.order)}, grouper{hint: len(t.order)}
	mask := make([]byte, len(t.rel.Columns))
	// named marks the columns r is named by: the key, or (full) every
	// value its row had before the batch that is not NULL.
	named := func(r *netRow) {
		clear(mask)
		if !t.full {
			for _, i := range t.keys {
				mask[i] = maskMatch
			}
			return
		}
		for i, v := range r.keyVals {
			if v.Kind != segment.Null {
				mask[i] = maskMatch
			}
		}
	}
	inserted := func(r *netRow) {
		clear(mask)
		for i, v := range r.vals {
			if v.Kind != segment.Unchanged {
				mask[i] = maskSet
			}
		}
	}
	for _, r := range t.order {
		switch {
		case r.existed && (!r.present || r.inserted):
			named(r)
			del.add(&s.deletes, mask, r)
			if r.present {
				inserted(r)
				ins.add(&s.inserts, mask, r)
			}
		case r.present && r.inserted:
			inserted(r)
			ins.add(&s.inserts, mask, r)
		case r.present:
			// The columns set: those sent, but neither a key (it did
			// not change) nor, with REPLICA IDENTITY FULL, a value the
			// row already had (as per row: an identity column GENERATED
			// ALWAYS may not be SET at all).
			named(r)
			set := false
			for i, v := range r.vals {
				if v.Kind == segment.Unchanged || (t.full && v == r.keyVals[i]) || (!t.full && t.rel.Columns[i].Key) {
					continue
				}
				mask[i] |= maskSet
				set = true
			}
			switch {
			case set:
				upd.add(&s.updates, mask, r)
			case t.full:
				chk.add(&s.checks, mask, r)
			}
			// else: a keyed update of key columns alone, for which
			// per-row replay sends nothing either
		}
	}
	return s
}

package restore

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/btfu/btfu/segment"
)

// netRel is items(id key, name, big) for the reducer's tests.
var netRel = &segment.Relation{OID: 1, Schema: "public", Name: "items", ReplicaIdentity: "d", Columns: []segment.Column{
	{Name: "id", Type: "integer", Key: true}, {Name: "name", Type: "text"}, {Name: "big", Type: "text"}}}

// netFullRel is netRel with REPLICA IDENTITY FULL (every column sent as
// key, as pgoutput does).
var netFullRel = &segment.Relation{OID: 2, Schema: "public", Name: "items", ReplicaIdentity: "f", Columns: []segment.Column{
	{Name: "id", Type: "integer", Key: true}, {Name: "name", Type: "text", Key: true}, {Name: "big", Type: "text", Key: true}}}

// netVals reads "1,a,b": "-" is NULL, "~" unchanged TOAST.
func netVals(s string) []segment.Value {
	var out []segment.Value
	for _, f := range strings.Split(s, ",") {
		switch f {
		case "-":
			out = append(out, segment.Value{Kind: segment.Null})
		case "~":
			out = append(out, segment.Value{Kind: segment.Unchanged})
		default:
			out = append(out, segment.TextValue(f))
		}
	}
	return out
}

// testNetRec reads "i 1,a,b", "u 1,a,~", "d 1" (a delete's other columns
// NULL), "uk 1,a,b" (update with the old key sent), and for REPLICA
// IDENTITY FULL "uf 1,a,b>1,c,~" (update with the old row) and "df 1,a,b".
func testNetRec(s string) *segment.Record {
	op, vals, _ := strings.Cut(s, " ")
	switch op {
	case "uf":
		old, img, _ := strings.Cut(vals, ">")
		return &segment.Record{T: segment.TypeUpdate, OldKind: "O", Old: netVals(old), New: netVals(img)}
	case "i":
		return &segment.Record{T: segment.TypeInsert, New: netVals(vals)}
	case "u":
		return &segment.Record{T: segment.TypeUpdate, New: netVals(vals)}
	case "uk":
		return &segment.Record{T: segment.TypeUpdate, OldKind: "K", Old: netVals("9,-,-"), New: netVals(vals)}
	case "d":
		return &segment.Record{T: segment.TypeDelete, OldKind: "K", Old: netVals(vals + ",-,-")}
	case "df":
		return &segment.Record{T: segment.TypeDelete, OldKind: "O", Old: netVals(vals)}
	}
	panic(s)
}

// describe prints a net set: "D[1] U(name)[2=b] I(id,name,big)[3=c,d]";
// a REPLICA IDENTITY FULL table's rows are named by all their values
// before the batch, and its deletes by the columns matched:
// "D(id,big)[1,-,b] U(name)[1,a,b=c]".
func (s netSet) describe(rel *segment.Relation) string {
	full := rel.ReplicaIdentity == "f"
	text := func(vals []segment.Value, cols []int) string {
		var parts []string
		for _, i := range cols {
			switch v := vals[i]; v.Kind {
			case segment.Null:
				parts = append(parts, "-")
			case segment.Unchanged:
				parts = append(parts, "~")
			default:
				parts = append(parts, v.Text)
			}
		}
		return strings.Join(parts, ",")
	}
	all := make([]int, len(rel.Columns))
	for i := range all {
		all[i] = i
	}
	name := func(r *netRow) string {
		if full {
			return text(r.keyVals, all)
		}
		return r.keyVals[0].Text
	}
	names := func(cols []int) string {
		var n []string
		for _, i := range cols {
			n = append(n, rel.Columns[i].Name)
		}
		return strings.Join(n, ",")
	}
	var out []string
	for _, g := range s.checks {
		var k []string
		for _, r := range g.rows {
			k = append(k, name(r))
		}
		out = append(out, "C("+names(g.match)+")["+strings.Join(k, " ")+"]")
	}
	for _, g := range s.deletes {
		var k []string
		for _, r := range g.rows {
			k = append(k, name(r))
		}
		tag := "D"
		if full {
			tag += "(" + names(g.match) + ")"
		}
		out = append(out, tag+"["+strings.Join(k, " ")+"]")
	}
	for _, kind := range []struct {
		tag string
		gs  []netGroup
	}{{"U", s.updates}, {"I", s.inserts}} {
		for _, g := range kind.gs {
			var rows []string
			for _, r := range g.rows {
				rows = append(rows, name(r)+"="+text(r.vals, g.cols))
			}
			out = append(out, fmt.Sprintf("%s(%s)[%s]", kind.tag, names(g.cols), strings.Join(rows, " ")))
		}
	}
	return strings.Join(out, " ")
}

// Each net-effect rule of set-based replay, and the sequences that must
// not reduce (they go to per-row replay).
func TestNetEffect(t *testing.T) {
	pool := &netPool{}
	for _, tc := range []struct {
		name    string
		changes []string
		want    string // "" with notNet: the last change is refused
		notNet  bool
		full    []int // REPLICA IDENTITY FULL (netFullRel), with these guard columns
	}{
		{"insert alone", []string{"i 1,a,b"}, "I(id,name,big)[1=1,a,b]", false, nil},
		{"insert + updates -> insert of the final row", []string{"i 1,a,b", "u 1,x,~", "u 1,y,z"}, "I(id,name,big)[1=1,y,z]", false, nil},
		{"insert + update leaving TOAST unchanged keeps the inserted value", []string{"i 1,a,big1", "u 1,x,~"}, "I(id,name,big)[1=1,x,big1]", false, nil},
		{"update + update -> last image", []string{"u 1,a,b", "u 1,c,d"}, "U(name,big)[1=c,d]", false, nil},
		{"update + update leaving TOAST unchanged keeps the older value", []string{"u 1,a,big1", "u 1,c,~"}, "U(name,big)[1=c,big1]", false, nil},
		{"updates both leaving TOAST unchanged do not set it", []string{"u 1,a,~", "u 1,c,~"}, "U(name)[1=c]", false, nil},
		{"update setting NULL", []string{"u 1,a,b", "u 1,-,~"}, "U(name,big)[1=-,b]", false, nil},
		{"insert + delete -> nothing", []string{"i 1,a,b", "u 1,c,~", "d 1"}, "", false, nil},
		{"update + delete -> delete", []string{"u 1,a,b", "d 1"}, "D[1]", false, nil},
		{"delete + insert -> delete then insert", []string{"d 1", "i 1,n,m", "u 1,o,~"}, "D[1] I(id,name,big)[1=1,o,m]", false, nil},
		{"update + delete + insert -> delete then insert", []string{"u 1,a,b", "d 1", "i 1,n,m"}, "D[1] I(id,name,big)[1=1,n,m]", false, nil},
		{"insert + delete + insert -> insert", []string{"i 1,a,b", "d 1", "i 1,c,d"}, "I(id,name,big)[1=1,c,d]", false, nil},
		{"keys apart, column sets apart, first-seen order", []string{"u 2,a,~", "i 3,c,d", "u 1,x,y", "u 2,b,~", "d 4"}, "D[4] U(name)[2=b] U(name,big)[1=x,y] I(id,name,big)[3=3,c,d]", false, nil},
		{"insert of a key present", []string{"u 2,a,b", "i 1,a,b", "i 1,c,d"}, "", true, nil},
		// Until a table's first update or delete no key is hashed: an
		// insert of a key inserted before goes to the target, whose
		// unique index refuses it as it would one by one.
		{"inserts alone are not matched by key", []string{"i 1,a,b", "i 1,c,d"}, "I(id,name,big)[1=1,a,b 1=1,c,d]", false, nil},
		{"an update after a repeated insert", []string{"i 1,a,b", "i 1,c,d", "u 1,x,~"}, "", true, nil},
		{"inserts, then an update of one of them", []string{"i 1,a,b", "i 2,c,d", "u 1,x,~", "d 2", "i 3,e,f"}, "I(id,name,big)[1=1,x,b 3=3,e,f]", false, nil},
		{"insert of a key updated", []string{"u 1,a,b", "i 1,c,d"}, "", true, nil},
		{"update of a key deleted", []string{"d 1", "u 1,a,b"}, "", true, nil},
		{"delete of a key deleted", []string{"i 1,a,b", "d 1", "d 1"}, "", true, nil},
		{"update changing the key", []string{"uk 1,a,b"}, "", true, nil},
		{"delete by every column of a keyed table", []string{"df 1,a,b"}, "", true, nil},
		{"NULL key", []string{"i -,a,b"}, "", true, nil},
		// REPLICA IDENTITY FULL: a row is named by all its values.
		{"full: update + update -> last image, named by the row before", []string{"uf 1,a,b>1,x,~", "uf 1,x,b>1,y,~"}, "U(name)[1,a,b=y]", false, []int{}},
		{"full: a value changed back is not set", []string{"uf 1,a,b>1,x,c", "uf 1,x,c>1,a,d"}, "U(big)[1,a,b=d]", false, []int{}},
		{"full: changed back entirely sets nothing, the row is looked for", []string{"uf 1,a,b>1,x,b", "uf 1,x,b>1,a,b", "uf 2,-,c>2,x,c", "uf 2,x,c>2,-,c"}, "C(id,name,big)[1,a,b] C(id,big)[2,-,c]", false, []int{}},
		{"full: insert + update -> insert of the final row", []string{"i 1,a,b", "uf 1,a,b>1,c,~"}, "I(id,name,big)[1,a,b=1,c,b]", false, []int{}},
		{"full: update + delete -> delete of the row before", []string{"uf 1,a,b>1,c,~", "df 1,c,b"}, "D(id,name,big)[1,a,b]", false, []int{}},
		{"full: delete + insert -> delete then insert", []string{"df 1,a,b", "i 1,a,b"}, "D(id,name,big)[1,a,b] I(id,name,big)[1,a,b=1,a,b]", false, []int{}},
		{"full: NULLs are matched as NULL", []string{"df 1,-,b", "uf 2,-,->2,x,~"}, "D(id,big)[1,-,b] U(name)[2,-,-=x]", false, []int{}},
		{"full: a duplicate on the target changed after another", []string{"uf 1,a,b>1,x,~", "uf 1,a,b>1,y,~"}, "", true, []int{}},
		{"full: a duplicate on the target deleted after another changed", []string{"uf 1,a,b>1,x,~", "df 1,a,b"}, "", true, []int{}},
		{"full: a row changed into values another had", []string{"uf 1,a,b>1,x,~", "uf 2,c,d>1,a,b", "uf 1,a,b>1,z,~"}, "U(name)[1,a,b=x] U(id,name,big)[2,c,d=1,z,b]", false, []int{}},
		{"full: inserted with values a row had", []string{"uf 1,a,b>1,x,~", "i 1,a,b", "df 1,a,b"}, "U(name)[1,a,b=x]", false, []int{}},
		{"full: a row of the batch made twice", []string{"i 1,a,b", "uf 2,c,d>1,a,b"}, "", true, []int{}},
		{"full: a duplicate inserted", []string{"uf 2,c,d>1,a,b", "i 1,a,b"}, "", true, []int{}},
		{"full: a row deleted, then its duplicate", []string{"df 1,a,b", "df 1,a,b"}, "", true, []int{}},
		{"full: an old row of NULLs alone", []string{"df -,-,-"}, "", true, []int{}},
		{"full: unchanged TOAST in the old row", []string{"df 1,a,~"}, "", true, []int{}},
		{"full: a change of a unique index's column", []string{"uf 1,a,b>1,c,~", "uf 1,c,b>2,c,~"}, "", true, []int{0}},
		{"full: other columns of a table with a unique index", []string{"uf 1,a,b>1,c,~", "uf 1,c,b>1,c,~"}, "U(name)[1,a,b=c]", false, []int{0}},
		{"full: an update without the old row", []string{"u 1,a,b"}, "", true, []int{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every case's rows come from those of the cases before
			// (netPool), as a batch's from the batches before it.
			rel := netRel
			if tc.full != nil {
				rel = netFullRel
			}
			nt := newNetTable(rel, pool)
			nt.guard = tc.full
			defer pool.put(nt)
			var err error
			for i, c := range tc.changes {
				err = nt.add(testNetRec(c))
				if err != nil && i < len(tc.changes)-1 {
					t.Fatalf("change %d (%s): %v", i, c, err)
				}
			}
			if tc.notNet {
				if !errors.Is(err, errNotNet) {
					t.Fatalf("the last change reduced (%v); want errNotNet", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := nt.net().describe(rel); got != tc.want {
				t.Errorf("net effect\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// A refused change leaves the net effect as it was, and the reducer's
// copies are its own: merging never writes into a record.
func TestNetEffectKeepsRecordsIntact(t *testing.T) {
	nt := newNetTable(netRel, nil)
	first, second := testNetRec("u 1,a,b"), testNetRec("u 1,c,~")
	for _, r := range []*segment.Record{first, second} {
		if err := nt.add(r); err != nil {
			t.Fatal(err)
		}
	}
	if first.New[1].Text != "a" {
		t.Errorf("merging wrote into the first record: %v", first.New)
	}
	if err := nt.add(testNetRec("i 1,x,y")); !errors.Is(err, errNotNet) {
		t.Fatalf("insert of a present key: %v", err)
	}
	if got := nt.net().describe(netRel); got != "U(name,big)[1=c,b]" || nt.changes != 2 {
		t.Errorf("after a refused change: %s (%d changes)", got, nt.changes)
	}
}

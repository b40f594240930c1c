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
// NULL), "uk 1,a,b" (update with the old key sent).
func testNetRec(s string) *segment.Record {
	op, vals, _ := strings.Cut(s, " ")
	switch op {
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

// describe prints a net set: "D[1] U(name)[2=b] I(id,name,big)[3=c,d]".
func (s netSet) describe(rel *segment.Relation) string {
	show := func(r *netRow, cols []int) string {
		var parts []string
		for _, i := range cols {
			switch v := r.vals[i]; v.Kind {
			case segment.Null:
				parts = append(parts, "-")
			default:
				parts = append(parts, v.Text)
			}
		}
		return r.keyVals[0].Text + "=" + strings.Join(parts, ",")
	}
	names := func(cols []int) string {
		var n []string
		for _, i := range cols {
			n = append(n, rel.Columns[i].Name)
		}
		return strings.Join(n, ",")
	}
	var out []string
	if len(s.deletes) > 0 {
		var k []string
		for _, r := range s.deletes {
			k = append(k, r.keyVals[0].Text)
		}
		out = append(out, "D["+strings.Join(k, " ")+"]")
	}
	for _, kind := range []struct {
		tag string
		gs  []netGroup
	}{{"U", s.updates}, {"I", s.inserts}} {
		for _, g := range kind.gs {
			var rows []string
			for _, r := range g.rows {
				rows = append(rows, show(r, g.cols))
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
	}{
		{"insert alone", []string{"i 1,a,b"}, "I(id,name,big)[1=1,a,b]", false},
		{"insert + updates -> insert of the final row", []string{"i 1,a,b", "u 1,x,~", "u 1,y,z"}, "I(id,name,big)[1=1,y,z]", false},
		{"insert + update leaving TOAST unchanged keeps the inserted value", []string{"i 1,a,big1", "u 1,x,~"}, "I(id,name,big)[1=1,x,big1]", false},
		{"update + update -> last image", []string{"u 1,a,b", "u 1,c,d"}, "U(name,big)[1=c,d]", false},
		{"update + update leaving TOAST unchanged keeps the older value", []string{"u 1,a,big1", "u 1,c,~"}, "U(name,big)[1=c,big1]", false},
		{"updates both leaving TOAST unchanged do not set it", []string{"u 1,a,~", "u 1,c,~"}, "U(name)[1=c]", false},
		{"update setting NULL", []string{"u 1,a,b", "u 1,-,~"}, "U(name,big)[1=-,b]", false},
		{"insert + delete -> nothing", []string{"i 1,a,b", "u 1,c,~", "d 1"}, "", false},
		{"update + delete -> delete", []string{"u 1,a,b", "d 1"}, "D[1]", false},
		{"delete + insert -> delete then insert", []string{"d 1", "i 1,n,m", "u 1,o,~"}, "D[1] I(id,name,big)[1=1,o,m]", false},
		{"update + delete + insert -> delete then insert", []string{"u 1,a,b", "d 1", "i 1,n,m"}, "D[1] I(id,name,big)[1=1,n,m]", false},
		{"insert + delete + insert -> insert", []string{"i 1,a,b", "d 1", "i 1,c,d"}, "I(id,name,big)[1=1,c,d]", false},
		{"keys apart, column sets apart, first-seen order", []string{"u 2,a,~", "i 3,c,d", "u 1,x,y", "u 2,b,~", "d 4"}, "D[4] U(name)[2=b] U(name,big)[1=x,y] I(id,name,big)[3=3,c,d]", false},
		{"insert of a key present", []string{"u 2,a,b", "i 1,a,b", "i 1,c,d"}, "", true},
		// Until a table's first update or delete no key is hashed: an
		// insert of a key inserted before goes to the target, whose
		// unique index refuses it as it would one by one.
		{"inserts alone are not matched by key", []string{"i 1,a,b", "i 1,c,d"}, "I(id,name,big)[1=1,a,b 1=1,c,d]", false},
		{"an update after a repeated insert", []string{"i 1,a,b", "i 1,c,d", "u 1,x,~"}, "", true},
		{"inserts, then an update of one of them", []string{"i 1,a,b", "i 2,c,d", "u 1,x,~", "d 2", "i 3,e,f"}, "I(id,name,big)[1=1,x,b 3=3,e,f]", false},
		{"insert of a key updated", []string{"u 1,a,b", "i 1,c,d"}, "", true},
		{"update of a key deleted", []string{"d 1", "u 1,a,b"}, "", true},
		{"delete of a key deleted", []string{"i 1,a,b", "d 1", "d 1"}, "", true},
		{"update changing the key", []string{"uk 1,a,b"}, "", true},
		{"delete by every column (REPLICA IDENTITY FULL)", []string{"df 1,a,b"}, "", true},
		{"NULL key", []string{"i -,a,b"}, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every case's rows come from those of the cases before
			// (netPool), as a batch's from the batches before it.
			nt := newNetTable(netRel, pool)
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
			if got := nt.net().describe(netRel); got != tc.want {
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

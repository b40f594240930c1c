package restore

import (
	"testing"

	"github.com/btfu/btfu/store"
)

// The tables a plan leaves out come by name, whatever order the stream and
// the new-tables check happened to write their records in.
func TestLeftOutIsInNameOrder(t *testing.T) {
	p := &Plan{Target: Target{Latest: true}, Base: store.BaseBackup{ConsistentLSN: 100}, LateTables: []store.TableCoverage{
		{ID: 1, Table: "public.k2", FromLSN: 300, LeftOut: true, Reason: "no primary key or replica identity"},
		{ID: 2, Table: "public.k1", FromLSN: 200},
		{ID: 3, Table: "public.a", FromLSN: 50},
	}}
	var got []string
	for _, c := range p.LeftOut() {
		got = append(got, c.Table)
	}
	if len(got) != 2 || got[0] != "public.k1" || got[1] != "public.k2" {
		t.Fatalf("left out: %v, want [public.k1 public.k2]", got)
	}
}

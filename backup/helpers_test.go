package backup

import (
	"slices"
	"strings"
	"testing"
	"time"
)

func TestWALBudgetExceeded(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		keepMB int64
		rate   float64
		dbSize int64
		want   int64
		over   bool
	}{
		{keepMB: -1, rate: 100 * mib, dbSize: 30 << 30, want: (1024 + 10) * 100 * mib},  // unlimited
		{keepMB: 512, rate: mib, dbSize: 0, want: 10 * mib},                             // the 10s margin
		{keepMB: 512, rate: mib, dbSize: 30 << 30, want: (1024 + 10) * mib, over: true}, // 30 GiB dump at 30 MiB/s
		{keepMB: 2048, rate: mib, dbSize: 30 << 30, want: (1024 + 10) * mib},            // room enough
		{keepMB: 0, rate: 0, dbSize: 30 << 30},                                          // idle source
	} {
		got, over := walBudgetExceeded(c.keepMB, c.rate, c.dbSize)
		if got != c.want || over != c.over {
			t.Errorf("walBudgetExceeded(%d MB, %.0f B/s, %d B) = %d, %v; want %d, %v", c.keepMB, c.rate, c.dbSize, got, over, c.want, c.over)
		}
	}
}

func TestTempSlotName(t *testing.T) {
	at := time.Unix(1767225600, 0)
	if got := tempSlotName("btfu_app", at); got != "btfu_app_b1767225600" {
		t.Errorf("got %s", got)
	}
	long := strings.Repeat("s", 63)
	if got := tempSlotName(long, at); len(got) != 63 || !strings.HasSuffix(got, "_b1767225600") {
		t.Errorf("got %s (%d bytes)", got, len(got))
	}
}

func TestSchemaDigestIgnoresRestrictKeys(t *testing.T) {
	digest := func(s string, chunk int) string {
		d := newSchemaDigest()
		for len(s) > 0 {
			n := min(chunk, len(s))
			d.Write([]byte(s[:n]))
			s = s[n:]
		}
		return d.Sum()
	}
	a := "--\n\\restrict AbC123\n\nCREATE TABLE t (id integer);\n\n\\unrestrict AbC123\n"
	b := "--\n\\restrict ZzZ999\n\nCREATE TABLE t (id integer);\n\n\\unrestrict ZzZ999\n"
	c := "--\n\\restrict ZzZ999\n\nCREATE TABLE t (id bigint);\n\n\\unrestrict ZzZ999\n"
	if digest(a, 1) != digest(b, 1000) || digest(a, 7) != digest(b, 3) {
		t.Error("restrict keys change the digest")
	}
	if digest(b, 5) == digest(c, 5) || digest(a+"x", 4) == digest(a, 4) {
		t.Error("a schema change does not change the digest")
	}
}

func TestCatalogPrintChangedSince(t *testing.T) {
	n := len(catalogTables)
	printOf := func(rows map[int][][2]int64) *catalogPrint {
		p := &catalogPrint{keys: make([][]int64, n), stamps: make([][]int64, n)}
		for c, rs := range rows {
			for _, r := range rs {
				p.keys[c], p.stamps[c] = append(p.keys[c], r[0]), append(p.stamps[c], r[1])
			}
		}
		return p
	}
	snap := printOf(map[int][][2]int64{0: {{10, 1}, {20, 1}, {30, 1}, {40, 1}}, 2: {{5, 7}}})
	// In catalog 0, 20 is dropped, 30 updated, and 5, 25, 50 are new;
	// catalog 1 has rows only now; catalog 2 is unchanged.
	now := printOf(map[int][][2]int64{0: {{5, 9}, {10, 1}, {25, 9}, {30, 2}, {40, 1}, {50, 9}}, 1: {{1, 1}}, 2: {{5, 7}}})
	got := snap.changedSince(now)
	if want := [][]int64{{20, 30}}; !slices.Equal(got[0], want[0]) || slices.ContainsFunc(got[1:], func(k []int64) bool { return len(k) > 0 }) {
		t.Errorf("changed %v, want %v in the first catalog only", got, want)
	}
	if got := snap.changedSince(printOf(nil)); !slices.Equal(got[0], []int64{10, 20, 30, 40}) || !slices.Equal(got[2], []int64{5}) {
		t.Errorf("everything dropped: changed %v", got)
	}
	if got := snap.rows(); got != 5 {
		t.Errorf("rows %d, want 5", got)
	}
}

package backup

import (
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

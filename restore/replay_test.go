package restore

import (
	"bytes"
	"strings"
	"testing"
)

func TestCopyEscape(t *testing.T) {
	for in, want := range map[string]string{
		"":                   "",
		"plain":              "plain",
		`back\slash`:         `back\\slash`,
		"tab\there":          `tab\there`,
		"line\nbreak\r\n":    `line\nbreak\r\n`,
		`\N`:                 `\\N`,
		"ünïcødé\t\\\n":      `ünïcødé\t\\\n`,
		`{"a": "b\"c"}`:      `{"a": "b\\"c"}`,
		"{1,2}\t{NULL,\"\"}": `{1,2}\t{NULL,""}`,
	} {
		var b bytes.Buffer
		copyEscape(&b, in)
		if b.String() != want {
			t.Errorf("copyEscape(%q) = %q, want %q", in, b.String(), want)
		}
	}
}

// Runs of inserts go through COPY, short runs through INSERT, and both
// interleave with updates, deletes and other tables in source order.
func TestInsertRunsKeepOrderAndValues(t *testing.T) {
	e := capturing(t)
	tricky := `E'tab\there', E'line\nbreak\r\n', E'back\\slash', '\N', '', 'null', 'ünïcødé', E'\\.', NULL`
	source.Exec(t, e.db, `
		INSERT INTO items(name, qty) VALUES ('short1', 1), ('short2', 2);
		INSERT INTO items(name, qty) SELECT (ARRAY[`+tricky+`])[1 + g % 9], g FROM generate_series(1, 100) g;
		UPDATE items SET qty = -qty WHERE id % 10 = 0;
		INSERT INTO items(name) SELECT 'only name ' || g FROM generate_series(1, 20) g;
		INSERT INTO tags SELECT g, (ARRAY[`+tricky+`])[1 + g % 9] FROM generate_series(1, 30) g;
		DELETE FROM items WHERE id % 7 = 0;
		INSERT INTO toasty SELECT g, repeat(md5(g::text), 200), g FROM generate_series(1, 12) g;
		INSERT INTO items(name, qty) VALUES ('after', 1)`)
	source.Exec(t, e.db, `BEGIN; INSERT INTO items(name, qty) SELECT 'tx2-' || g, g FROM generate_series(1, 5) g; COMMIT`)
	source.Exec(t, e.db, `INSERT INTO items(name, qty) SELECT 'tx3-' || g, g FROM generate_series(1, 5) g`)
	m := e.mark(t, "runs")
	e.waitStored(t, m)
	db, sum, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	got := contentHash(t, target, db)
	for _, tbl := range tables {
		if got[tbl] != m.hash[tbl] {
			t.Errorf("table %s differs from the source", tbl)
		}
	}
	if sum.CopiedRows == 0 || sum.CopiedRows >= sum.Rows {
		t.Errorf("%d of %d rows copied; want runs copied and short runs inserted", sum.CopiedRows, sum.Rows)
	}
	if strings.Contains(got["items"], "empty") {
		t.Error("items restored empty")
	}
}

package restore

import (
	"fmt"
	"testing"

	"github.com/btfu/btfu/internal/pgtest"
)

// settingsProof is a table's values in a form no session setting changes:
// epochs, interval fields and the exact bytes of floats.
const settingsProof = `SELECT md5(string_agg(concat_ws('|', id, extract(epoch FROM d), extract(epoch FROM ts), extract(epoch FROM tstz),
	extract(year FROM iv), extract(month FROM iv), extract(day FROM iv), extract(epoch FROM iv - date_trunc('day', iv)),
	encode(float8send(f), 'hex'), encode(float4send(r), 'hex'), cash::numeric, encode(b, 'hex')), ',' ORDER BY id)) FROM %s`

// Values travel as text (DESIGN 2.4), so their form must not depend on the
// settings of the sessions that write and read them: a source database
// whose DateStyle is SQL, DMY, IntervalStyle sql_standard, few float
// digits, bytea escaped and a time zone with an ambiguous abbreviation is
// restored into a target with other settings, through the stream and
// through the rows of CREATE TABLE AS written in such a session.
func TestValuesSurviveSessionSettings(t *testing.T) {
	settings := `DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I SET datestyle = %L', current_database(), 'SQL, DMY');
  EXECUTE format('ALTER DATABASE %I SET intervalstyle = %L', current_database(), 'sql_standard');
  EXECUTE format('ALTER DATABASE %I SET extra_float_digits = %L', current_database(), '-4');
  EXECUTE format('ALTER DATABASE %I SET bytea_output = %L', current_database(), 'escape');
  EXECUTE format('ALTER DATABASE %I SET timezone = %L', current_database(), 'Asia/Kolkata');
END $$;
CREATE TABLE vals (id int PRIMARY KEY, d date, ts timestamp, tstz timestamptz, iv interval, f float8, r float4, cash money, b bytea);`
	e := capturingConf(t, nil, settings, `tables_without_key = "replica_identity_full"`)
	rows := `(1, '2020-05-06', '2020-05-06 07:08:09.123456', '2020-05-06 07:08:09.123456+00', '-1 day +02:03:04', 0.1::float8 + 0.2, 1.1, 12.34, '\x00ff5c27'),
	(2, '1999-12-31', '2001-02-03 04:05:06', '2021-11-07 01:30:00-04', '1 year -1 month 3 days', 1e-300, 3.4e38, -0.01, ''),
	(3, '0044-03-15 BC', 'infinity', '-infinity', '-3 days -04:05:06.5', 'NaN', '-0', 0, '\xdeadbeef')`
	source.Exec(t, e.db, "INSERT INTO vals VALUES "+rows)
	source.Exec(t, e.db, "UPDATE vals SET f = f * 3, iv = iv + '1 mon -1 sec' WHERE id = 1")
	source.Exec(t, e.db, "CREATE TABLE vals_copy AS SELECT * FROM vals")
	m := e.mark(t, "settings")
	want := map[string]string{}
	for _, tbl := range []string{"vals", "vals_copy"} {
		want[tbl] = pgtest.QueryValue[string](t, source, e.db, fmt.Sprintf(settingsProof, tbl))
	}
	e.waitStored(t, m)
	db, _, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	for tbl, h := range want {
		if got := pgtest.QueryValue[string](t, target, db, fmt.Sprintf(settingsProof, tbl)); got != h {
			show := "SELECT string_agg(concat_ws('|', id, extract(epoch FROM d), extract(epoch FROM ts), extract(epoch FROM tstz), extract(year FROM iv), extract(month FROM iv), extract(day FROM iv), extract(epoch FROM iv - date_trunc('day', iv)), encode(float8send(f), 'hex'), encode(float4send(r), 'hex'), cash::numeric, encode(b, 'hex')), E'\\n' ORDER BY id) FROM " + tbl
			t.Errorf("%s differs from the source after restore:\n%s\nsource:\n%s", tbl, pgtest.QueryValue[string](t, target, db, show), pgtest.QueryValue[string](t, source, e.db, show))
		}
	}
}

// Captured DDL reads its constants as its source session did: a date in
// DateStyle DMY and a timestamptz without a zone in the session's time
// zone, in defaults and partition bounds; and a partition bound that is
// an expression (FROM (now())) keeps the value the source computed.
func TestCapturedDDLReadsConstantsAsTheSourceSession(t *testing.T) {
	e := capturingConf(t, nil, `DO $$ BEGIN
  EXECUTE format('ALTER DATABASE %I SET datestyle = %L', current_database(), 'SQL, DMY');
  EXECUTE format('ALTER DATABASE %I SET timezone = %L', current_database(), 'Asia/Kolkata');
END $$`, "")
	src := func(sql string) { t.Helper(); source.Exec(t, e.db, sql) }
	src(`CREATE TABLE consts (id int PRIMARY KEY, d date DEFAULT '06/05/2020', ts timestamptz DEFAULT '2020-05-06 10:00')`)
	src(`CREATE TABLE vp (id int, at timestamptz, PRIMARY KEY (id, at)) PARTITION BY RANGE (at);
		CREATE TABLE vp_2020 PARTITION OF vp FOR VALUES FROM ('2020-01-01 00:00') TO ('2020-06-01 00:00');
		CREATE TABLE vp_now PARTITION OF vp FOR VALUES FROM (now()) TO (MAXVALUE)`)
	src(`INSERT INTO vp VALUES (1, '2019-12-31 19:00+00'), (2, clock_timestamp()); INSERT INTO consts(id) VALUES (1)`)
	m := e.mark(t, "constants")
	// Compared by instants and partitions: the text of a timestamp
	// depends on the reading session (DMY, and IST is Israel's in the
	// default abbreviations).
	rows := `SELECT (SELECT string_agg(id || ':' || extract(epoch FROM at) || ':' || tableoid::regclass::text, ',' ORDER BY id) FROM vp)
		|| ' ' || (SELECT string_agg(id || ':' || extract(epoch FROM d) || ':' || extract(epoch FROM ts), ',' ORDER BY id) FROM consts)`
	want := pgtest.QueryValue[string](t, source, e.db, rows)
	newRow := "INSERT INTO consts(id) VALUES (2) RETURNING extract(epoch FROM d)::text || ' ' || extract(epoch FROM ts)::text"
	probe := "INSERT INTO vp VALUES (3, '2019-12-31 18:45+00') RETURNING tableoid::regclass::text"
	wantNew := pgtest.QueryValue[string](t, source, e.db, newRow)
	e.waitStored(t, m)
	db, _, err := e.restore(t, Target{LSN: m.lsn})
	if err != nil {
		t.Fatal(err)
	}
	if got := pgtest.QueryValue[string](t, target, db, rows); got != want {
		t.Errorf("restored %s, source held %s", got, want)
	}
	if got := pgtest.QueryValue[string](t, target, db, newRow); got != wantNew {
		t.Errorf("defaults give %s on the restore, %s on the source", got, wantNew)
	}
	if got := pgtest.QueryValue[string](t, target, db, probe); got != "vp_2020" {
		t.Errorf("a row at 2019-12-31 18:45 UTC goes to %s, want vp_2020 (from 2020-01-01 00:00 in Asia/Kolkata)", got)
	}
}

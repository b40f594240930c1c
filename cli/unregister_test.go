package cli_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/internal/pgtest"
)

// unregister, after a capture with a later base backup and DDL capture
// installed, leaves nothing of btfu's on the source; it refuses while a
// btfu runs and without confirmation; the stored backups still restore.
func TestUnregisterRemovesEverythingBtfuCreated(t *testing.T) {
	db := source.CreateDB(t)
	source.Exec(t, db, "CREATE TABLE t(id serial PRIMARY KEY, v text); CREATE TABLE nokey(a int, b text)")
	slot := "s_" + db
	dir := writeConfig(t, fmt.Sprintf("[[source]]\nname = \"app\"\ndsn = %q\nslot = %q\nschedule = \"off\"\nreplica_identity_full = [\"public.nokey\"]\n", source.DSN(db), slot))
	t.Cleanup(func() {
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE '%s%%' AND NOT active", slot))
	})
	stop, _ := startDaemon(t, dir)
	waitStatus(t, dir, "streaming")
	source.Exec(t, db, "INSERT INTO t(v) VALUES ('before the second base'); INSERT INTO nokey VALUES (1, 'one')")
	if r := btfu(t, dir, "backup"); r.code != 0 {
		t.Fatalf("backup: %s", r.all())
	}
	source.Exec(t, db, "INSERT INTO t(v) VALUES ('after it'); UPDATE nokey SET b = 'uno'")
	lsn := source.CurrentLSN(t)
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		st, _ := sourceStatusJSON(t, dir)
		if l, err := pglogrepl.ParseLSN(st.FlushedLSN); err == nil && l >= lsn {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not stored up to %s: %+v", lsn, st)
		}
	}
	if ident := pgtest.QueryValue[string](t, source, db, "SELECT relreplident::text FROM pg_class WHERE relname = 'nokey'"); ident != "f" {
		t.Fatalf("nokey has replica identity %s after registration", ident)
	}

	if r := btfu(t, dir, "unregister", "--yes"); r.code == 0 || !strings.Contains(r.all(), "stop it first") {
		t.Fatalf("unregister while btfu runs: exit %d\n%s", r.code, r.all())
	}
	stop()
	// What a later base backup's temporary slot is called.
	source.Exec(t, db, fmt.Sprintf("SELECT pg_create_logical_replication_slot('%s_b1700000000', 'pgoutput')", slot))
	objects := func() string {
		return pgtest.QueryValue[string](t, source, db, fmt.Sprintf(`SELECT concat_ws(',',
			(SELECT string_agg(slot_name, ' ') FROM pg_replication_slots WHERE slot_name LIKE '%s%%'),
			(SELECT string_agg(pubname, ' ') FROM pg_publication),
			(SELECT string_agg(evtname, ' ') FROM pg_event_trigger),
			(SELECT string_agg(proname, ' ') FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE nspname = 'btfu'),
			(SELECT string_agg(nspname, ' ') FROM pg_namespace WHERE nspname = 'btfu'))`, slot))
	}
	before := objects()
	for _, want := range []string{slot + " ", slot + "_b1700000000", "btfu_app", "btfu_capture_ddl", "btfu"} {
		if !strings.Contains(before, want) {
			t.Fatalf("before unregister, no %q among %s", want, before)
		}
	}

	r := btfu(t, dir, "unregister")
	if r.code != 2 || !strings.Contains(r.all(), "pass --yes") || objects() != before {
		t.Fatalf("unregister without a terminal or --yes: exit %d\n%s\nobjects %s", r.code, r.all(), objects())
	}
	r = btfu(t, dir, "unregister", "--yes", "--restore-replica-identity")
	if r.code != 0 {
		t.Fatalf("unregister: exit %d\n%s", r.code, r.all())
	}
	for _, want := range []string{"main slot", "slot of a later base backup", "publication btfu_app", "event trigger btfu_capture_ddl", "schema btfu", "table btfu.replica_identity_set", "public.nokey: REPLICA IDENTITY FULL set by btfu, back to DEFAULT"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the list lacks %q:\n%s", want, r.stdout)
		}
	}
	t.Logf("btfu unregister --yes --restore-replica-identity:\n%s", r.stdout)
	if left := objects(); left != "" {
		t.Fatalf("left on the source: %s\n%s", left, r.all())
	}
	if ident := pgtest.QueryValue[string](t, source, db, "SELECT relreplident::text FROM pg_class WHERE relname = 'nokey'"); ident != "d" {
		t.Fatalf("nokey has replica identity %s after unregister --restore-replica-identity", ident)
	}
	waitStatus(t, dir, "unregistered", "attention:")

	target := source.CreateDB(t)
	if r := btfu(t, dir, "restore", "--latest", "--target", source.DSN(target), "--yes"); r.code != 0 {
		t.Fatalf("restore after unregister: exit %d\n%s", r.code, r.all())
	}
	for _, q := range []string{"SELECT string_agg(id || v, ',' ORDER BY id) FROM t", "SELECT string_agg(a || b, ',' ORDER BY a) FROM nokey"} {
		if got, want := pgtest.QueryValue[string](t, source, target, q), pgtest.QueryValue[string](t, source, db, q); got != want {
			t.Fatalf("%s: restored %q, source %q", q, got, want)
		}
	}
}

func TestUnregisterHelp(t *testing.T) {
	r := btfu(t, t.TempDir(), "unregister", "--help")
	for _, want := range []string{"Usage: btfu unregister", "-source", "-yes", "-restore-replica-identity", "stored backups are kept"} {
		if r.code != 0 || !strings.Contains(r.stdout, want) {
			t.Errorf("unregister --help lacks %q: exit %d\n%s", want, r.code, r.all())
		}
	}
	if r := btfu(t, t.TempDir(), "--help"); !strings.Contains(r.stdout, "\n  unregister ") {
		t.Errorf("--help does not list unregister:\n%s", r.stdout)
	}
}

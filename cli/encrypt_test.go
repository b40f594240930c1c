package cli_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/btfu/btfu/internal/pgtest"
)

// A user encrypts to their age key: capture runs with the public key only;
// verify checks checksums without the identity and content with it;
// restore without the identity names the artifact and key, with --identity
// it restores.
func TestEncryptedCaptureVerifyRestore(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	db := source.CreateDB(t)
	source.Exec(t, db, "CREATE TABLE orders(id serial PRIMARY KEY, total int)")
	dir := writeConfig(t, fmt.Sprintf("[storage]\nencrypt_to = [%q]\n[[source]]\nname = \"shop\"\ndsn = %q\nslot = \"s_%s\"\n", id.Recipient().String(), source.DSN(db), db))
	keyFile := filepath.Join(t.TempDir(), "restore.key")
	if err := os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = 's_%s' AND NOT active", db))
	})
	cmd := exec.Command(bin, "--no-tui")
	cmd.Dir = dir
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			cmd.Process.Signal(syscall.SIGTERM)
			cmd.Wait()
		}
	}
	defer stop()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var st statusJSON
		json.Unmarshal([]byte(btfu(t, dir, "status", "--json").stdout), &st)
		if len(st.Sources) == 1 && st.Sources[0].State == "streaming" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not streaming:\n%s", logs.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	source.Exec(t, db, "INSERT INTO orders(total) SELECT g FROM generate_series(1, 10) g; DELETE FROM orders WHERE id > 7")
	lsn := source.CurrentLSN(t)
	for btfu(t, dir, "restore", "--lsn", lsn.String(), "--dry-run").code != 0 {
		if time.Now().After(deadline) {
			t.Fatal("coverage never reached the changes")
		}
		time.Sleep(300 * time.Millisecond)
	}
	stop()
	if strings.Contains(logs.String(), "AGE-SECRET-KEY") {
		t.Fatal("a private key in the logs")
	}

	// Status says the source is encrypted.
	if r := btfu(t, dir, "status"); !strings.Contains(r.stdout, "encryption:") || !strings.Contains(r.stdout, "age to 1 recipient") {
		t.Errorf("status does not say the source is encrypted:\n%s", r.stdout)
	}

	r := btfu(t, dir, "verify")
	t.Logf("verify without identity:\n%s", r.stdout)
	if r.code != 0 || !strings.Contains(r.stdout, "checksums verified, content of") || !strings.Contains(r.stdout, "NOT checked") || !strings.Contains(r.stdout, "all checksums verified") {
		t.Fatalf("verify without identity: %d %s", r.code, r.all())
	}
	r = btfu(t, dir, "verify", "--identity", keyFile)
	if r.code != 0 || !strings.Contains(r.stdout, "encrypted (age): ") || strings.Contains(r.stdout, "NOT checked") || !strings.Contains(r.stdout, "all artifacts verified") {
		t.Fatalf("verify --identity: %d %s", r.code, r.all())
	}

	tgt := source.CreateDB(t)
	r = btfu(t, dir, "restore", "--lsn", lsn.String(), "--target", source.DSN(tgt), "--yes")
	t.Logf("restore without identity: %s", r.stderr)
	if r.code != 1 || !strings.Contains(r.stderr, "needs the identity of "+id.Recipient().String()) || !strings.Contains(r.stderr, "storage.age_identity_file") || !strings.Contains(r.stderr, "artifact shop/") {
		t.Fatalf("restore without identity: %d %s", r.code, r.all())
	}
	r = btfu(t, dir, "restore", "--lsn", lsn.String(), "--target", source.DSN(tgt), "--yes", "--identity", keyFile)
	if r.code != 0 {
		t.Fatalf("restore --identity: %d %s", r.code, r.all())
	}
	if n := pgtest.QueryValue[int64](t, source, tgt, "SELECT count(*) FROM orders"); n != 7 {
		t.Fatalf("restored %d rows, want 7", n)
	}
}

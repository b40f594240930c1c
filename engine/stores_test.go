package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/agecrypt"
)

// The artifact store opened from config.toml encrypts each source's new
// artifacts to its recipients ([storage]'s unless it names its own) and
// decrypts with the configured identity, read only when needed.
func TestOpenArtifactsEncryptsAsConfigured(t *testing.T) {
	global, own := ageIdentity(t), ageIdentity(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keys", "restore.key")
	os.MkdirAll(filepath.Dir(keyFile), 0o700)
	if err := os.WriteFile(keyFile, []byte("# created by age-keygen\n"+global.String()+"\n"+own.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	load := func(identity string) config.Storage {
		t.Helper()
		cfg, err := config.Parse("c.toml", []byte(fmt.Sprintf(`
[storage]
path = %q
encrypt_to = [%q]
%s
[[source]]
name = "orders"
dsn = "postgres://u@h/orders"
[[source]]
name = "billing"
dsn = "postgres://u@h/billing"
encrypt_to = [%q]
`, filepath.Join(dir, "data"), global.Recipient().String(), identity, own.Recipient().String())))
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Storage
	}
	ctx := context.Background()
	arts, err := OpenArtifacts(ctx, load(fmt.Sprintf("age_identity_file = %q", keyFile)))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"orders/segments/1/a.ndjson.zst": global.Recipient().String(),
		"billing/base/b.dump":            own.Recipient().String(),
	}
	for key, to := range want {
		if _, err := arts.Put(ctx, key, strings.NewReader("content of "+key)); err != nil {
			t.Fatal(err)
		}
		raw := read(t, artifact.Stored(arts), key)
		if got := agecrypt.Recipients(raw); len(got) != 1 || got[0] != to {
			t.Errorf("%s stored to %v, want %s", key, got, to)
		}
		if got := string(read(t, arts, key)); got != "content of "+key {
			t.Errorf("%s reads back %q", key, got)
		}
	}

	// Without an identity, or with one that cannot be read, reads fail
	// naming the artifact, the key and the setting to fix.
	for _, tc := range []struct {
		identity, cat, says string
	}{
		{"", agecrypt.CatNoIdentity, "set storage.age_identity_file"},
		{fmt.Sprintf("age_identity_file = %q", keyFile+".gone"), agecrypt.CatIdentity, "storage.age_identity_file"},
	} {
		arts, err := OpenArtifacts(ctx, load(tc.identity))
		if err != nil {
			t.Fatal(err)
		}
		_, err = arts.Get(ctx, "orders/segments/1/a.ndjson.zst")
		if agecrypt.Category(err) != tc.cat || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), global.Recipient().String()) {
			t.Errorf("identity %q: %v; want category %s saying %q and the key", tc.identity, err, tc.cat, tc.says)
		}
	}
	// The identity from the environment.
	t.Setenv("BTFU_TEST_AGE_ID", own.String())
	arts, err = OpenArtifacts(ctx, load(`age_identity = "${BTFU_TEST_AGE_ID}"`))
	if err != nil {
		t.Fatal(err)
	}
	if got := string(read(t, arts, "billing/base/b.dump")); got != "content of billing/base/b.dump" {
		t.Errorf("with the identity from the environment: %q", got)
	}
}

func ageIdentity(t *testing.T) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func read(t *testing.T, s artifact.Store, key string) []byte {
	t.Helper()
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Encryption settings edited in config.toml apply to the next artifacts
// without a restart; other [storage] edits still need one.
func TestReloadAppliesNewRecipients(t *testing.T) {
	id := ageIdentity(t)
	dir := t.TempDir()
	db := source.CreateDB(t)
	storage := fmt.Sprintf("[metadata]\npath = %q\n[storage]\npath = %q\n", filepath.Join(dir, "btfu.db"), filepath.Join(dir, "data"))
	src := fmt.Sprintf("[[source]]\nname = \"app\"\ndsn = %q\nslot = \"s_%s\"\nschedule = \"off\"\n", source.DSN(db), db)
	parse := func(text string) *config.Config {
		t.Helper()
		cfg, err := config.Parse(filepath.Join(dir, "config.toml"), []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	ctx := context.Background()
	e, err := Open(ctx, parse(storage+src), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	events := e.Subscribe(t.Context())
	// reload applies text and returns the kinds of the events it sent.
	reload := func(text string) []string {
		t.Helper()
		if err := e.Reload(ctx, parse(text)); err != nil {
			t.Fatal(err)
		}
		e.Event(ctx, 0, levelInfo, "test.mark", "", nil)
		var kinds []string
		for r := range events {
			if r.Kind == "test.mark" {
				return kinds
			}
			kinds = append(kinds, r.Kind)
		}
		return kinds
	}
	put := func(key string) []string {
		t.Helper()
		if _, err := e.Artifacts().Put(ctx, key, strings.NewReader("x")); err != nil {
			t.Fatal(err)
		}
		return agecrypt.Recipients(read(t, artifact.Stored(e.Artifacts()), key))
	}
	if got := put("app/segments/1/a"); got != nil {
		t.Fatalf("before the edit: stored to %v, want plain", got)
	}
	kinds := reload(storage + fmt.Sprintf("encrypt_to = [%q]\n", id.Recipient().String()) + src)
	if strings.Contains(strings.Join(kinds, ","), "config.restart_needed") {
		t.Errorf("an encrypt_to edit: events %v, want no restart needed", kinds)
	}
	if got := put("app/segments/1/b"); len(got) != 1 || got[0] != id.Recipient().String() {
		t.Errorf("after the edit: stored to %v, want %s", got, id.Recipient().String())
	}
	kinds = reload(strings.Replace(storage, "/data\"", "/elsewhere\"", 1) + src)
	if !strings.Contains(strings.Join(kinds, ","), "config.restart_needed") {
		t.Errorf("a storage.path edit: events %v, want a restart needed", kinds)
	}
	if got := put("app/segments/1/c"); len(got) != 1 {
		t.Errorf("after an edit that needs a restart: stored to %v, want the running recipients kept", got)
	}
}

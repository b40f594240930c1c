package backup

import (
	"context"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/agecrypt"
)

// Base backups and schema snapshots stored through the age layer are age
// files whose recorded size and checksum are the stored bytes', and
// pg_restore reads them back through it. A machine without the identity
// cannot compare the schema with the previous encrypted snapshot: it
// records a new one, and says why without a warning.
func TestEncryptedBaseBackupsAndSchemaSnapshots(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	rcp, err := agecrypt.ParseRecipient(id.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, withIdentity := range []bool{true, false} {
		name := "no identity"
		if withIdentity {
			name = "identity"
		}
		t.Run(name, func(t *testing.T) {
			opts := agecrypt.Options{Recipients: func(string) []agecrypt.Recipient { return []agecrypt.Recipient{rcp} }}
			if withIdentity {
				opts.Identities = func() ([]age.Identity, error) { return []age.Identity{id}, nil }
			}
			arts := agecrypt.New(localStore(t), opts)
			f := newFixture(t, arts, shopSchema)
			main := f.mustTake(t, true, 0)
			second := f.mustTake(t, false, main.ChainID)
			ctx := context.Background()
			schemas, err := f.meta.ListSchemaSnapshots(ctx, f.sourceID)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range []struct {
				key, sha string
				size     int64
			}{
				{main.ArtifactKey, main.SHA256, main.SizeBytes}, {second.ArtifactKey, second.SHA256, second.SizeBytes}, {schemas[0].ArtifactKey, schemas[0].SHA256, schemas[0].SizeBytes},
			} {
				sum, raw := sha256Of(t, artifact.Stored(arts), a.key)
				if !agecrypt.Encrypted(raw) || sum != a.sha || int64(len(raw)) != a.size {
					t.Errorf("%s: stored %d bytes (encrypted %v, sha %s), recorded %d bytes, sha %s", a.key, len(raw), agecrypt.Encrypted(raw), sum, a.size, a.sha)
				}
			}
			logs := f.logs.String()
			if withIdentity {
				if len(schemas) != 1 {
					t.Errorf("unchanged schema, identity at hand: %d schema snapshots, want 1", len(schemas))
				}
				db := restore(t, arts, second.ArtifactKey)
				if n := pgtest.QueryValue[int64](t, target, db, "SELECT count(*) FROM customers"); n != 50 {
					t.Errorf("restored %d customers from the encrypted base backup, want 50", n)
				}
				return
			}
			if len(schemas) != 2 || strings.Contains(logs, "cannot read the previous schema snapshot") || !strings.Contains(logs, "no identity is configured here") {
				t.Errorf("without identity: %d schema snapshots, logs:\n%s", len(schemas), logs)
			}
		})
	}
}

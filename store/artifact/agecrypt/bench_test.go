package agecrypt_test

import (
	"context"
	"io"
	"testing"

	"filippo.io/age"

	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/agecrypt"
	"github.com/btfu/btfu/store/artifact/local"
)

// BenchmarkPutGet streams 256 MiB into a local store and back, plain and
// through the age layer: the cost of encryption per byte (make bench).
func BenchmarkPutGet(b *testing.B) {
	const size = 256 << 20
	id, err := age.GenerateX25519Identity()
	if err != nil {
		b.Fatal(err)
	}
	rcp, err := agecrypt.ParseRecipient(id.Recipient().String())
	if err != nil {
		b.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		wrap func(artifact.Store) artifact.Store
	}{
		{"plain", func(s artifact.Store) artifact.Store { return s }},
		{"age", func(s artifact.Store) artifact.Store {
			return agecrypt.New(s, agecrypt.Options{
				Recipients: func(string) []agecrypt.Recipient { return []agecrypt.Recipient{rcp} },
				Identities: func() ([]age.Identity, error) { return []age.Identity{id}, nil },
			})
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			inner, err := local.New(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			s := tc.wrap(inner)
			ctx := context.Background()
			b.SetBytes(size)
			for b.Loop() {
				if _, _, err := artifact.PutHashed(ctx, s, "big", &zeros{left: size}); err != nil {
					b.Fatal(err)
				}
				rc, err := s.Get(ctx, "big")
				if err != nil {
					b.Fatal(err)
				}
				if n, err := io.Copy(io.Discard, rc); err != nil || n != size {
					b.Fatal(n, err)
				}
				rc.Close()
			}
		})
	}
}

package engine

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"

	"filippo.io/age"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/agecrypt"
	"github.com/btfu/btfu/store/artifact/local"
	s3store "github.com/btfu/btfu/store/artifact/s3"
	"github.com/btfu/btfu/store/postgres"
	"github.com/btfu/btfu/store/sqlite"
)

// OpenMetadata opens (and migrates) the configured metadata store.
func OpenMetadata(ctx context.Context, cfg config.Metadata) (store.Store, error) {
	switch cfg.Driver {
	case "postgres":
		return postgres.Open(ctx, cfg.DSN, cfg.Schema)
	default:
		return sqlite.Open(ctx, cfg.Path)
	}
}

// OpenArtifacts opens the configured artifact store and checks it is
// reachable. It is always behind the age layer: new artifacts are
// encrypted to the configured recipients (none: stored plain), and
// encrypted ones, whatever the configuration now says, are decrypted with
// the configured identity, read whenever one is.
func OpenArtifacts(ctx context.Context, cfg config.Storage) (artifact.Store, error) {
	st, err := openBackend(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return agecrypt.New(st, encryption(cfg)), nil
}

// IdentityHint says how to give btfu the identity that decrypts.
const IdentityHint = "set storage.age_identity_file in config.toml to the identity file (private key) age-keygen wrote for that key, or storage.age_identity = \"${BTFU_AGE_IDENTITY}\"; btfu restore and verify also take --identity FILE"

func encryption(cfg config.Storage) agecrypt.Options {
	parsed := map[string][]agecrypt.Recipient{}
	for name, keys := range cfg.Recipients {
		for _, k := range keys {
			// Checked when the configuration was loaded.
			if r, err := agecrypt.ParseRecipient(k); err == nil {
				parsed[name] = append(parsed[name], r)
			}
		}
	}
	return agecrypt.Options{
		Recipients: func(key string) []agecrypt.Recipient {
			// Keys start with the source's name.
			source, _, _ := strings.Cut(key, "/")
			if r, ok := parsed[source]; ok {
				return r
			}
			return parsed[""]
		},
		Identities: func() ([]age.Identity, error) {
			switch {
			case cfg.AgeIdentity != "":
				ids, err := agecrypt.ParseIdentities(strings.NewReader(cfg.AgeIdentity))
				if err != nil {
					return nil, fmt.Errorf("storage.age_identity: %w", err)
				}
				return ids, nil
			case cfg.AgeIdentityFile != "":
				f, err := os.Open(cfg.AgeIdentityFile)
				if err != nil {
					return nil, fmt.Errorf("storage.age_identity_file: %w", err)
				}
				defer f.Close()
				ids, err := agecrypt.ParseIdentities(f)
				if err != nil {
					return nil, fmt.Errorf("storage.age_identity_file %s: %w", cfg.AgeIdentityFile, err)
				}
				return ids, nil
			}
			return nil, nil
		},
		IdentityHint: IdentityHint,
	}
}

// encryptionOnly reports whether a and b differ at most in their
// encryption settings (recipients, identity), which apply without a
// restart.
func encryptionOnly(a, b config.Storage) bool {
	for _, s := range []*config.Storage{&a, &b} {
		s.EncryptTo, s.EncryptToFile, s.AgeIdentityFile, s.AgeIdentity, s.Recipients = nil, "", "", "", nil
	}
	return reflect.DeepEqual(a, b)
}

// setEncryption applies cfg's recipients and identity to an open store;
// false when arts is not behind the age layer.
func setEncryption(arts artifact.Store, cfg config.Storage) bool {
	l, ok := arts.(*agecrypt.Store)
	if ok {
		l.SetOptions(encryption(cfg))
	}
	return ok
}

func openBackend(ctx context.Context, cfg config.Storage) (artifact.Store, error) {
	switch cfg.Kind {
	case "s3":
		s := cfg.S3
		st, err := s3store.New(ctx, s3store.Config{
			Bucket: s.Bucket, Prefix: s.Prefix, Region: s.Region, Endpoint: s.Endpoint, PathStyle: s.PathStyle,
			AccessKeyID: s.AccessKeyID, SecretAccessKey: s.SecretAccessKey, SessionToken: s.SessionToken,
			PartSize: int64(s.PartSize),
		})
		if err != nil {
			return nil, fmt.Errorf("storage.s3: %w", err)
		}
		return st, nil
	default:
		st, err := local.New(cfg.Path)
		if err != nil {
			return nil, fmt.Errorf("storage.path: %w", err)
		}
		return st, nil
	}
}

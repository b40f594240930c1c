package engine

import (
	"context"
	"fmt"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
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
// reachable.
func OpenArtifacts(ctx context.Context, cfg config.Storage) (artifact.Store, error) {
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

package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"slices"

	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact/agecrypt"
)

// recordSchema records the schema snapshot stored at s.ArtifactKey unless
// the newest recorded one has the same content (digest), in which case the
// new artifact is deleted.
func (j *job) recordSchema(ctx context.Context, s store.SchemaSnapshot, digest string) error {
	snaps, err := j.Meta.ListSchemaSnapshots(ctx, j.SourceID)
	if err != nil {
		return err
	}
	if len(snaps) > 0 && j.sameSchema(ctx, snaps[len(snaps)-1], s.SHA256, digest) {
		if err := j.Artifacts.Delete(ctx, s.ArtifactKey); err != nil {
			return fmt.Errorf("delete unchanged schema snapshot %s: %w", s.ArtifactKey, err)
		}
	} else if _, err := j.Meta.AddSchemaSnapshot(ctx, s); err != nil {
		return err
	}
	// Deleted, or recorded and so outliving this base backup.
	j.written = slices.DeleteFunc(j.written, func(k string) bool { return k == s.ArtifactKey })
	return nil
}

// sameSchema compares with the previous snapshot, by checksum and else by
// content digest (reading it back); unreadable means changed.
func (j *job) sameSchema(ctx context.Context, prev store.SchemaSnapshot, sha, digest string) bool {
	if prev.SHA256 == sha {
		return true
	}
	r, err := j.Artifacts.Get(ctx, prev.ArtifactKey)
	if err == nil {
		defer r.Close()
		d := newSchemaDigest()
		if _, err = io.Copy(d, r); err == nil {
			return d.Sum() == digest
		}
	}
	if agecrypt.Category(err) == agecrypt.CatNoIdentity {
		// Encrypted, and this machine holds only public keys: expected.
		j.log.Info("the previous schema snapshot is encrypted and no identity is configured here to compare with it; recording a new one", "key", prev.ArtifactKey)
		return false
	}
	j.log.Warn("cannot read the previous schema snapshot; recording a new one", "key", prev.ArtifactKey, "err", err)
	return false
}

// schemaDigest hashes a plain-format schema dump without the lines that
// differ between two dumps of the same schema: pg_dump (15.14, 16.10,
// 17.6 and later) frames its output with \restrict and \unrestrict lines
// carrying a new random key each run.
type schemaDigest struct {
	h    hash.Hash
	line []byte
}

func newSchemaDigest() *schemaDigest { return &schemaDigest{h: sha256.New()} }

func (d *schemaDigest) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			d.line = append(d.line, p...)
			break
		}
		d.line = append(d.line, p[:i+1]...)
		d.flush()
		p = p[i+1:]
	}
	return n, nil
}

func (d *schemaDigest) flush() {
	if !bytes.HasPrefix(d.line, []byte(`\restrict `)) && !bytes.HasPrefix(d.line, []byte(`\unrestrict `)) {
		d.h.Write(d.line)
	}
	d.line = d.line[:0]
}

// Sum returns the hex digest of everything written.
func (d *schemaDigest) Sum() string {
	d.flush()
	return hex.EncodeToString(d.h.Sum(nil))
}

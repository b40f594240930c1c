package restore

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os/exec"
	"sort"
	"strings"

	"github.com/btfu/btfu/coverage"
	"github.com/btfu/btfu/pgbin"
	"github.com/btfu/btfu/segment"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
)

// VerifyReport is what Verify found.
type VerifyReport struct {
	BaseBackups int
	Segments    int
	Bytes       int64
	Problems    []string // each names the artifact and what is wrong
	Coverage    []coverage.Range
}

// Verify reads every stored artifact of a source: checksums, segment
// readability (whole, with their trailer), chain continuity, and that each
// base backup's archive lists its tables (pg_restore --list).
func Verify(ctx context.Context, meta store.Store, arts artifact.Store, sourceID int64) (*VerifyReport, error) {
	src, err := coverage.Load(ctx, meta, sourceID)
	if err != nil {
		return nil, err
	}
	bases, segs := src.Bases, src.Segments
	rep := &VerifyReport{Coverage: src.Ranges}
	restoreProg, perr := pgbin.Find(ctx, "pg_restore", 0)
	for _, b := range bases {
		if b.Status != store.BackupComplete {
			continue
		}
		rep.BaseBackups++
		rep.Bytes += b.SizeBytes
		if err := checkArtifact(ctx, arts, b.ArtifactKey, b.SHA256, nil); err != nil {
			rep.Problems = append(rep.Problems, err.Error())
			continue
		}
		if perr != nil {
			rep.Problems = append(rep.Problems, "cannot list base backups: "+perr.Error())
			continue
		}
		tables, err := listTables(ctx, arts, b.ArtifactKey, restoreProg.Path)
		if err != nil {
			rep.Problems = append(rep.Problems, fmt.Sprintf("base backup %s: pg_restore --list: %v", b.ArtifactKey, err))
		} else if tables == 0 {
			rep.Problems = append(rep.Problems, fmt.Sprintf("base backup %s lists no table", b.ArtifactKey))
		}
	}
	sort.Slice(segs, func(i, j int) bool {
		if segs[i].ChainID != segs[j].ChainID {
			return segs[i].ChainID < segs[j].ChainID
		}
		return segs[i].FirstCommitLSN < segs[j].FirstCommitLSN
	})
	for i, s := range segs {
		rep.Segments++
		rep.Bytes += s.StoredBytes
		if i > 0 && segs[i-1].ChainID == s.ChainID && segs[i-1].EndLSN != s.PrevEndLSN {
			rep.Problems = append(rep.Problems, fmt.Sprintf("gap in chain %d between segment %s (ends %s) and %s (follows %s)", s.ChainID, segs[i-1].ArtifactKey, segs[i-1].EndLSN, s.ArtifactKey, s.PrevEndLSN))
		}
		check := func(r io.Reader) error {
			sr, err := segment.NewReader(r)
			if err != nil {
				return err
			}
			defer sr.Close()
			var txs int64
			for {
				rec, err := sr.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					return err
				}
				if rec.T == segment.TypeCommit {
					txs++
				}
			}
			if txs != s.TxCount {
				return fmt.Errorf("holds %d transactions, recorded %d", txs, s.TxCount)
			}
			return nil
		}
		if err := checkArtifact(ctx, arts, s.ArtifactKey, s.SHA256, check); err != nil {
			rep.Problems = append(rep.Problems, err.Error())
		}
	}
	return rep, nil
}

// checkArtifact reads key once, hashing it and, if given, parsing it.
func checkArtifact(ctx context.Context, arts artifact.Store, key, sha string, parse func(io.Reader) error) error {
	rc, err := arts.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("artifact %s: %w", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	r := io.TeeReader(rc, h)
	var perr error
	if parse != nil {
		perr = parse(r)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		return fmt.Errorf("artifact %s: %w", key, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sha {
		return fmt.Errorf("artifact %s: %w (stored %s, recorded %s)", key, ErrCorruptArtifact, got, sha)
	}
	if perr != nil {
		return fmt.Errorf("artifact %s: unreadable: %w", key, perr)
	}
	return nil
}

func listTables(ctx context.Context, arts artifact.Store, key, prog string) (int, error) {
	rc, err := arts.Get(ctx, key)
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	cmd := exec.CommandContext(ctx, prog, "--list")
	cmd.Stdin = rc
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	n := 0
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.Contains(sc.Text(), " TABLE DATA ") {
			n++
		}
	}
	if err := cmd.Wait(); err != nil {
		return 0, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return n, nil
}

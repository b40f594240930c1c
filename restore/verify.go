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
	"github.com/btfu/btfu/store/artifact/agecrypt"
)

// VerifyReport is what Verify found.
type VerifyReport struct {
	BaseBackups int
	Segments    int
	Bytes       int64
	Problems    []string // each names the artifact and what is wrong
	Coverage    []coverage.Range
	// Encrypted counts the artifacts stored encrypted (age); Unchecked
	// those among them whose content was not checked because no identity
	// is configured (their checksums were).
	Encrypted int
	Unchecked int
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
		if err := rep.check(ctx, arts, b.ArtifactKey, b.SHA256, nil); err != nil {
			if agecrypt.Category(err) != agecrypt.CatNoIdentity {
				rep.Problems = append(rep.Problems, err.Error())
			}
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
	// Segments are small and many: read readAhead at once (object stores
	// answer each request after a first-byte latency), report in order.
	type result struct {
		encrypted bool
		err       error
	}
	results := make([]result, len(segs))
	concurrently(len(segs), readAhead, nil, func(i int) {
		s := segs[i]
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
		results[i].encrypted, results[i].err = checkStored(ctx, arts, s.ArtifactKey, s.SHA256, check)
	})
	for i, s := range segs {
		rep.Segments++
		rep.Bytes += s.StoredBytes
		if i > 0 && segs[i-1].ChainID == s.ChainID && segs[i-1].EndLSN != s.PrevEndLSN {
			rep.Problems = append(rep.Problems, fmt.Sprintf("gap in chain %d between segment %s (ends %s) and %s (follows %s)", s.ChainID, segs[i-1].ArtifactKey, segs[i-1].EndLSN, s.ArtifactKey, s.PrevEndLSN))
		}
		if err := rep.count(results[i].encrypted, results[i].err); err != nil && agecrypt.Category(err) != agecrypt.CatNoIdentity {
			rep.Problems = append(rep.Problems, err.Error())
		}
	}
	return rep, nil
}

// check reads key once, checking the SHA-256 of its stored bytes and,
// when given, parsing its content (decrypted when it is encrypted),
// counting encrypted artifacts and those it could not decrypt for want of
// an identity (then the error has category agecrypt.CatNoIdentity).
func (rep *VerifyReport) check(ctx context.Context, arts artifact.Store, key, sha string, parse func(io.Reader) error) error {
	return rep.count(checkStored(ctx, arts, key, sha, parse))
}

// count adds what checkStored said of one artifact to the report.
func (rep *VerifyReport) count(encrypted bool, err error) error {
	if encrypted {
		rep.Encrypted++
	}
	if agecrypt.Category(err) == agecrypt.CatNoIdentity {
		rep.Unchecked++
	}
	return err
}

// checkStored reads the bytes stored under key once (below every layer of
// arts): their SHA-256 must be want, and what Get would return (decrypted)
// goes to parse, or is read through when parse is nil, which checks an
// encrypted artifact's authentication. A checksum mismatch is
// ErrCorruptArtifact; content that cannot be decrypted (no identity, the
// wrong one) or parsed is reported after the checksum is found right.
func checkStored(ctx context.Context, arts artifact.Store, key, want string, parse func(io.Reader) error) (encrypted bool, err error) {
	rc, err := artifact.Stored(arts).Get(ctx, key)
	if err != nil {
		return false, fmt.Errorf("artifact %s: %w", key, err)
	}
	defer rc.Close()
	h := sha256.New()
	raw := &readErr{r: rc}
	head := &headBytes{n: len(agecrypt.Magic)}
	stored := io.TeeReader(raw, io.MultiWriter(h, head))
	defer func() { encrypted = agecrypt.Encrypted(head.b) }()
	content, cerr := artifact.Decode(arts, key, stored)
	if cerr == nil {
		if parse == nil {
			parse = func(r io.Reader) error { _, err := io.Copy(io.Discard, r); return err }
		}
		cerr = parse(content)
	}
	// The rest of the stored bytes, whatever the content check did.
	if _, err := io.Copy(io.Discard, stored); err != nil {
		return false, fmt.Errorf("artifact %s: %w", key, err)
	}
	if raw.err != nil {
		return false, fmt.Errorf("artifact %s: %w", key, raw.err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return false, fmt.Errorf("artifact %s: %w (stored %s, recorded %s)", key, ErrCorruptArtifact, got, want)
	}
	if cerr != nil {
		if agecrypt.Category(cerr) != "" {
			return false, cerr // names the artifact and what to do
		}
		return false, fmt.Errorf("artifact %s: unreadable: %w", key, cerr)
	}
	return false, nil
}

// headBytes keeps the first n bytes written to it.
type headBytes struct {
	n int
	b []byte
}

func (h *headBytes) Write(p []byte) (int, error) {
	if k := min(len(p), h.n-len(h.b)); k > 0 {
		h.b = append(h.b, p[:k]...)
	}
	return len(p), nil
}

// readErr remembers a read error of the store, which a layer above may
// have reported differently.
type readErr struct {
	r   io.Reader
	err error
}

func (r *readErr) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
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

// Package compact merges a source's small old segments into larger ones,
// so a restore reads one object per hour of history instead of thousands
// (each object costs an object store's first-byte latency).
//
// # How a merge is made safe
//
// For each group (consecutive segments of one chain whose first commits
// fall in the same UTC hour, that hour over at least Options.After ago,
// together at most Options.MaxBytes stored):
//
//  1. every small segment is read from the store and its checksum checked
//     (a corrupt one stops the group: it is never copied into a new object
//     that would look sound); its records are copied in order into one new
//     segment written to the spool directory;
//  2. the new segment is stored under its own key (its first commit LSN and
//     end LSN; no small segment has that key);
//  3. it is read back from the store: checksum, transaction and change
//     counts, LSN range, and a digest of every record with the relation it
//     was decoded with must equal what was read from the small segments;
//  4. the metadata switches in one transaction (store.ReplaceSegments),
//     which refuses unless every small segment is still recorded;
//  5. the small objects stay in the store for Options.Grace: a restore or
//     verify that planned with them before the switch still reads them.
//     Sweep deletes them after that, and any other object under a chain's
//     segment prefix that no record references (a merged object whose
//     switch never happened, a segment stored by a capture that died before
//     recording it) once it is older than the grace. A merge's spool file
//     that a killed btfu left is removed by a later run after a day.
//
// A crash (kill -9) at any step leaves the chain restorable: before step 4
// the records still name the small segments, which are untouched; after
// it they name the verified merged one. What is left over is only an
// unreferenced object, which Sweep removes.
package compact

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/btfu/btfu/segment"
	"github.com/btfu/btfu/store"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/agecrypt"
)

// Defaults for Options.
const (
	DefaultMaxBytes = 256 << 20
	DefaultGrace    = 24 * time.Hour
)

// Options say what to merge and how long replaced objects stay.
type Options struct {
	// After: an hour is merged once it ended at least this long ago.
	After time.Duration
	// MaxBytes bounds a merged object's stored size (DefaultMaxBytes when
	// zero); an hour holding more becomes several objects.
	MaxBytes int64
	// Grace is how long replaced and unreferenced objects stay in the
	// store before Sweep deletes them (DefaultGrace when zero; negative:
	// none, for tests).
	Grace time.Duration
	// SpoolDir holds the merged segment while it is written (the system's
	// temporary directory when empty).
	SpoolDir string

	// step, when set, is called after each step of a merge ("stored",
	// "verified", "switched") and of a sweep ("deleted"): tests stop the
	// process there.
	step func(name string)
}

func (o Options) maxBytes() int64 {
	if o.MaxBytes <= 0 {
		return DefaultMaxBytes
	}
	return o.MaxBytes
}

func (o Options) grace() time.Duration {
	switch {
	case o.Grace == 0:
		return DefaultGrace
	case o.Grace < 0:
		return 0
	}
	return o.Grace
}

func (o Options) at(name string) {
	if o.step != nil {
		o.step(name)
	}
}

// Report says what one run did.
type Report struct {
	Merged   int   // merged objects stored and switched to
	Replaced int   // segment records they replaced
	Swept    int   // objects deleted by Sweep
	Freed    int64 // their stored bytes
	// Skipped names groups left as they were, with why (a segment deleted
	// meanwhile by retention, a corrupt one): the next run tries again.
	Skipped []string
}

// Plan returns the groups Apply would merge now: runs of at least two
// consecutive segments (segs as store.ListSegments orders them).
func Plan(segs []store.Segment, now time.Time, o Options) [][]store.Segment {
	cutoff := now.Add(-o.After)
	var groups [][]store.Segment
	var run []store.Segment
	var size int64
	end := func() {
		if len(run) >= 2 {
			groups = append(groups, run)
		}
		run, size = nil, 0
	}
	for _, s := range segs {
		hour := s.FirstCommitAt.UTC().Truncate(time.Hour)
		ripe := !hour.Add(time.Hour).After(cutoff) && !s.LastCommitAt.After(cutoff) && s.FormatVersion == segment.FormatVersion
		if len(run) > 0 {
			last := run[len(run)-1]
			if !ripe || s.ChainID != last.ChainID || s.PrevEndLSN != last.EndLSN ||
				!hour.Equal(run[0].FirstCommitAt.UTC().Truncate(time.Hour)) || size+s.StoredBytes > o.maxBytes() {
				end()
			}
		}
		if ripe {
			run = append(run, s)
			size += s.StoredBytes
		}
	}
	end()
	return groups
}

// Apply merges what Plan finds for the source, then sweeps. A group that
// cannot be merged is skipped (Report.Skipped) and tried again next time;
// the error is for the metadata store failing, or ctx.
func Apply(ctx context.Context, meta store.Store, arts artifact.Store, src store.Source, o Options, now time.Time, log *slog.Logger) (Report, error) {
	var rep Report
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	removeStaleSpool(o.SpoolDir, src.Name, log)
	segs, err := meta.ListSegments(ctx, src.ID, 0)
	if err != nil {
		return rep, err
	}
	for _, g := range Plan(segs, now, o) {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		m, err := Merge(ctx, meta, arts, src.Name, g, o)
		if err != nil {
			if ctx.Err() != nil {
				return rep, ctx.Err()
			}
			if agecrypt.Category(err) != "" {
				// No identity (or the wrong one): every group would fail.
				return rep, fmt.Errorf("compaction reads the segments it merges and cannot decrypt them: %w", err)
			}
			what := fmt.Sprintf("%d segments of chain %d from %s to %s: %v", len(g), g[0].ChainID, g[0].PrevEndLSN, g[len(g)-1].EndLSN, err)
			rep.Skipped = append(rep.Skipped, what)
			log.Warn("compaction: group left as it was; tried again next run", "source", src.Name, "group", what)
			continue
		}
		rep.Merged++
		rep.Replaced += len(g)
		log.Info("compaction: merged", "source", src.Name, "chain_id", m.ChainID, "segments", len(g), "key", m.ArtifactKey,
			"from_lsn", m.PrevEndLSN.String(), "to_lsn", m.EndLSN.String(), "transactions", m.TxCount, "size", m.StoredBytes)
	}
	n, freed, err := Sweep(ctx, meta, arts, src, o, now, log)
	rep.Swept, rep.Freed = n, freed
	return rep, err
}

// Merge writes, stores, verifies and switches to one segment holding the
// transactions of group (consecutive segments of one chain).
func Merge(ctx context.Context, meta store.Store, arts artifact.Store, source string, group []store.Segment, o Options) (store.Segment, error) {
	first, last := group[0], group[len(group)-1]
	f, err := os.CreateTemp(o.SpoolDir, spoolPrefix(source)+"*.ndjson.zst")
	if err != nil {
		return store.Segment{}, fmt.Errorf("spool merged segment: %w", err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	// The merged header is the first small one's, made now.
	var w *segment.Writer
	open := func(h segment.Header) (*segment.Writer, error) {
		if w == nil {
			h.CreatedAt = time.Time{}
			w, err = segment.NewWriter(f, h, zstd.SpeedBetterCompression)
		}
		return w, err
	}
	want := newTally()
	for _, s := range group {
		if err := readChecked(ctx, arts, s, want, open); err != nil {
			return store.Segment{}, err
		}
	}
	sum, err := w.Close()
	if err != nil {
		return store.Segment{}, fmt.Errorf("finish merged segment: %w", err)
	}
	var txs, changes int64
	for _, s := range group {
		txs += s.TxCount
		changes += s.ChangeCount
	}
	if sum.PrevEndLSN != first.PrevEndLSN || sum.FirstCommitLSN != first.FirstCommitLSN || sum.LastCommitLSN != last.LastCommitLSN ||
		sum.EndLSN != last.EndLSN || sum.TxCount != txs || sum.ChangeCount != changes {
		return store.Segment{}, fmt.Errorf("merged segment spans %s..%s with %d transactions and %d changes; its records say %s..%s with %d and %d",
			sum.PrevEndLSN, sum.EndLSN, sum.TxCount, sum.ChangeCount, first.PrevEndLSN, last.EndLSN, txs, changes)
	}

	// Store it: what is read from the spool must be what was written.
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return store.Segment{}, err
	}
	key := segment.ObjectKey(source, first.ChainID, sum.FirstCommitLSN, sum.EndLSN)
	given := &counter{h: sha256.New()}
	size, sha, err := artifact.PutHashed(ctx, arts, key, io.TeeReader(f, given))
	if err != nil {
		return store.Segment{}, fmt.Errorf("store merged segment %s: %w", key, err)
	}
	if got := hex.EncodeToString(given.h.Sum(nil)); got != sum.SHA256 || given.n != sum.StoredBytes {
		arts.Delete(ctx, key)
		return store.Segment{}, fmt.Errorf("store merged segment %s: the spool file changed while it was stored", key)
	}
	o.at("stored")

	// Read it back as a restore would, and compare.
	merged := store.Segment{
		SourceID: first.SourceID, ChainID: first.ChainID, FormatVersion: sum.Format, ArtifactKey: key,
		FirstCommitLSN: sum.FirstCommitLSN, LastCommitLSN: sum.LastCommitLSN, EndLSN: sum.EndLSN, PrevEndLSN: sum.PrevEndLSN,
		FirstCommitAt: sum.FirstCommitAt, LastCommitAt: sum.LastCommitAt, TxCount: sum.TxCount, ChangeCount: sum.ChangeCount,
		RawBytes: sum.RawBytes, StoredBytes: size, SHA256: sha,
	}
	got := newTally()
	if err := readChecked(ctx, arts, merged, got, nil); err != nil {
		arts.Delete(ctx, key)
		return store.Segment{}, fmt.Errorf("merged segment %s read back: %w", key, err)
	}
	if got.txs != want.txs || got.changes != want.changes || !bytes.Equal(got.h.Sum(nil), want.h.Sum(nil)) {
		arts.Delete(ctx, key)
		return store.Segment{}, fmt.Errorf("merged segment %s read back holds %d transactions and %d changes, digest %x; the small ones %d, %d, %x",
			key, got.txs, got.changes, got.h.Sum(nil), want.txs, want.changes, want.h.Sum(nil))
	}
	o.at("verified")

	ids := make([]int64, len(group))
	for i, s := range group {
		ids[i] = s.ID
	}
	m, err := meta.ReplaceSegments(ctx, ids, merged)
	if err != nil {
		// Whether the switch happened is not certain (a lost commit
		// reply); Sweep deletes the object once nothing references it.
		return store.Segment{}, err
	}
	o.at("switched")
	return m, nil
}

// tally counts and digests the records of segments as a restore sees them:
// each record, and for a change the relation it is decoded with.
type tally struct {
	h             hash.Hash
	txs, changes  int64
	encodeRecords *json.Encoder
}

func newTally() *tally {
	t := &tally{h: sha256.New()}
	t.encodeRecords = json.NewEncoder(t.h)
	return t
}

func (t *tally) add(r *segment.Reader, rec *segment.Record) error {
	switch rec.T {
	case segment.TypeRelation:
		return nil // where a relation is written differs; what it says is in the changes
	case segment.TypeBegin:
		t.txs++
	case segment.TypeCommit:
	default:
		t.changes++
	}
	if err := t.encodeRecords.Encode(rec); err != nil {
		return err
	}
	oids := rec.RelOIDs
	if rec.RelOID != 0 {
		oids = []uint32{rec.RelOID}
	}
	for _, oid := range oids {
		if err := t.encodeRecords.Encode(r.Relation(oid)); err != nil {
			return err
		}
	}
	return nil
}

// readChecked reads segment s from the store (below every layer, so its
// recorded checksum is checked on the bytes it covers), tallies its
// records and, when to is set, copies them into the writer it gives for
// the segment's header. A checksum mismatch fails after the last byte,
// before anything copied is stored.
func readChecked(ctx context.Context, arts artifact.Store, s store.Segment, t *tally, to func(segment.Header) (*segment.Writer, error)) error {
	rc, err := artifact.Stored(arts).Get(ctx, s.ArtifactKey)
	if err != nil {
		return fmt.Errorf("read segment %s: %w", s.ArtifactKey, err)
	}
	defer rc.Close()
	h := sha256.New()
	stored := io.TeeReader(rc, h)
	content, err := artifact.Decode(arts, s.ArtifactKey, stored)
	if err != nil {
		return fmt.Errorf("segment %s: %w", s.ArtifactKey, err)
	}
	r, err := segment.NewReader(content)
	if err != nil {
		return fmt.Errorf("segment %s: %w", s.ArtifactKey, err)
	}
	defer r.Close()
	if r.Header.ChainID != s.ChainID || segment.LSN(r.Header.PrevEndLSN) != s.PrevEndLSN {
		return fmt.Errorf("segment %s: its header says chain %d from %s, its record chain %d from %s",
			s.ArtifactKey, r.Header.ChainID, segment.LSN(r.Header.PrevEndLSN), s.ChainID, s.PrevEndLSN)
	}
	var w *segment.Writer
	if to != nil {
		if w, err = to(r.Header); err != nil {
			return err
		}
	}
	txs, changes := t.txs, t.changes
	for {
		rec, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("segment %s: %w", s.ArtifactKey, err)
		}
		if err := t.add(r, rec); err != nil {
			return err
		}
		if w == nil {
			continue
		}
		switch rec.T {
		case segment.TypeRelation:
			err = w.WriteRelation(rec.Relation)
		case segment.TypeBegin:
			var at time.Time
			if rec.CommitTime != nil {
				at = *rec.CommitTime
			}
			err = w.BeginTx(segment.TxInfo{XID: rec.XID, CommitLSN: rec.LSN(), EndLSN: rec.End(), CommitTime: at, Changes: rec.Changes})
		case segment.TypeCommit:
			err = w.CommitTx()
		default:
			err = w.WriteChange(rec)
		}
		if err != nil {
			return fmt.Errorf("copy segment %s: %w", s.ArtifactKey, err)
		}
	}
	if _, err := io.Copy(io.Discard, stored); err != nil {
		return fmt.Errorf("read segment %s: %w", s.ArtifactKey, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != s.SHA256 {
		return fmt.Errorf("segment %s is corrupt (stored SHA-256 %s, recorded %s); run btfu verify", s.ArtifactKey, got, s.SHA256)
	}
	if t.txs-txs != s.TxCount || t.changes-changes != s.ChangeCount {
		return fmt.Errorf("segment %s holds %d transactions and %d changes, its record says %d and %d",
			s.ArtifactKey, t.txs-txs, t.changes-changes, s.TxCount, s.ChangeCount)
	}
	return nil
}

// Sweep deletes objects under the source's chains' segment prefixes that
// no segment record references: replaced ones once the segment that
// replaced them was recorded Grace ago, others once they are Grace old.
func Sweep(ctx context.Context, meta store.Store, arts artifact.Store, src store.Source, o Options, now time.Time, log *slog.Logger) (int, int64, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	chains, err := meta.ListChains(ctx, src.ID)
	if err != nil {
		return 0, 0, err
	}
	// Objects first, records second: a segment stored and recorded in
	// between is referenced when it is judged.
	objects := map[int64][]artifact.Info{}
	for _, c := range chains {
		list, err := arts.List(ctx, segment.ChainPrefix(src.Name, c.ID))
		if err != nil {
			return 0, 0, fmt.Errorf("list segments of chain %d: %w", c.ID, err)
		}
		objects[c.ID] = list
	}
	segs, err := meta.ListSegments(ctx, src.ID, 0)
	if err != nil {
		return 0, 0, err
	}
	referenced := map[string]bool{}
	byChain := map[int64][]store.Segment{}
	for _, s := range segs {
		referenced[s.ArtifactKey] = true
		byChain[s.ChainID] = append(byChain[s.ChainID], s)
	}
	cut := now.Add(-o.grace())
	n, freed := 0, int64(0)
	for _, c := range chains {
		for _, obj := range objects[c.ID] {
			if referenced[obj.Key] {
				continue
			}
			since, reason := obj.ModTime, "stored and never recorded (a crash between the two, or a merge whose switch did not happen)"
			if first, end, ok := segment.ParseObjectKey(obj.Key); ok {
				for _, s := range byChain[c.ID] {
					if s.FirstCommitLSN <= first && end <= s.EndLSN {
						since, reason = s.CreatedAt, "replaced by "+s.ArtifactKey
						break
					}
				}
			}
			if since.After(cut) {
				continue
			}
			if err := arts.Delete(ctx, obj.Key); err != nil && !errors.Is(err, artifact.ErrNotFound) {
				log.Warn("compaction: could not delete an unreferenced segment object; it only wastes space", "key", obj.Key, "err", err)
				continue
			}
			n++
			freed += obj.Size
			log.Info("compaction: deleted", "source", src.Name, "key", obj.Key, "size", obj.Size, "reason", reason)
			o.at("deleted")
		}
	}
	return n, freed, nil
}

// spoolPrefix starts the names of a source's merged segments while they
// are written.
func spoolPrefix(source string) string { return "btfu-compact-" + source + "-" }

// staleSpool is the age after which a merge's spool file is taken for one
// a killed btfu left behind: no merge of at most MaxBytes takes that long.
const staleSpool = 24 * time.Hour

// removeStaleSpool deletes the spool files of merges a killed btfu left
// (up to MaxBytes each).
func removeStaleSpool(dir, source string, log *slog.Logger) {
	if dir == "" {
		dir = os.TempDir()
	}
	old, _ := filepath.Glob(filepath.Join(dir, spoolPrefix(source)+"*.ndjson.zst"))
	for _, f := range old {
		if fi, err := os.Stat(f); err == nil && time.Since(fi.ModTime()) > staleSpool {
			if os.Remove(f) == nil {
				log.Info("compaction: removed the spool file of a merge that did not finish", "file", f, "size", fi.Size())
			}
		}
	}
}

// counter hashes and counts what is written to it.
type counter struct {
	h hash.Hash
	n int64
}

func (c *counter) Write(p []byte) (int, error) {
	c.n += int64(len(p))
	return c.h.Write(p)
}

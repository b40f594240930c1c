package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/btfu/btfu/api"
	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/internal/human"
	"github.com/btfu/btfu/logging"
	"github.com/btfu/btfu/retention"
	"github.com/btfu/btfu/store"
)

func retentionCommand() command {
	return command{
		name:    "retention",
		summary: "apply a source's retention now, or with --dry-run show what would go and why (per base backup and segment range)",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			name := sourceFlag(fs)
			dryRun := fs.Bool("dry-run", false, "only show what would be kept (by which rule) and deleted (why); delete nothing")
			return func(env *Env, path string, args []string) error {
				st, err := openStored(env, path, *name, args)
				if err != nil {
					return err
				}
				defer st.meta.Close()
				if !*dryRun {
					c, err := running(st.cfg)
					if err == nil {
						return fmt.Errorf("a btfu is running on this metadata (control API on %s): it applies retention after every base backup; stop it to apply retention by hand, or use --dry-run", c.Where())
					}
					if !errors.Is(err, api.ErrNotRunning) {
						return err
					}
				}
				p := engine.RetentionPolicy(st.src)
				now := time.Now()
				pl, err := retention.MakePlan(env.Ctx, st.meta, st.rec.ID, p, now)
				if err != nil {
					return err
				}
				writePlan(env.Stdout, st.src, p, pl, now)
				if pl.Problem != "" {
					return &ExitError{Code: 1, Err: fmt.Errorf("retention refuses this plan: %s; nothing is deleted (please report it)", pl.Problem)}
				}
				if *dryRun {
					fmt.Fprintln(env.Stdout, "dry run: nothing deleted")
					return nil
				}
				arts, err := engine.OpenArtifacts(env.Ctx, st.cfg.Storage)
				if err != nil {
					return err
				}
				rep, err := retention.Apply(env.Ctx, st.meta, arts, st.rec.ID, p, now, logging.New(st.cfg.Log, env.Stderr))
				if err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "deleted %d base backup(s), %d segment(s), %d sequence snapshot(s); %s freed\n",
					rep.DeletedBaseBackups, rep.DeletedSegments, rep.DeletedSequenceSnapshots, human.Bytes(rep.FreedBytes))
				if rep.ArtifactErrors > 0 {
					return &ExitError{Code: 1, Err: fmt.Errorf("%d artifact(s) could not be deleted (their records are gone; see the log lines above)", rep.ArtifactErrors)}
				}
				return nil
			}
		},
	}
}

// writePlan prints a retention plan: every base backup with the rules
// that keep it or why it goes, segments in ranges of the same verdict,
// sequence snapshots, and what the safety rules kept.
func writePlan(w io.Writer, sc *config.Source, p retention.Policy, pl retention.Plan, now time.Time) {
	loc := p.Location
	at := func(t time.Time) string { return t.In(loc).Format("2006-01-02 15:04 MST") }
	fmt.Fprintf(w, "source %s, as of %s: keep_base_backups = %d, keep_for = %s, keep_daily = %d, keep_weekly = %d, keep_monthly = %d, timezone = %s\n",
		sc.Name, at(now), sc.KeepBaseBackups, sc.KeepFor, sc.KeepDaily, sc.KeepWeekly, sc.KeepMonthly, loc)

	var goBases, goSegs int
	var goBytes int64
	fmt.Fprintln(w, "\nBase backups:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  \tID\tSNAPSHOT\tLSN\tSTATUS\tSIZE\tWHY")
	for _, v := range pl.Bases {
		b := v.Base
		verdict, why := "keep", strings.Join(v.Keep, "; ")
		if v.Drop != "" {
			verdict, why = "DELETE", v.Drop
			goBases++
			goBytes += b.SizeBytes
		} else if v.Point {
			why += " (restore point: its snapshot time only)"
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s\t%s\t%s\t%s\t%s\n", verdict, b.ID, at(b.SnapshotTime), b.ConsistentLSN, b.Status, human.Bytes(b.SizeBytes), why)
	}
	tw.Flush()

	fmt.Fprintln(w, "\nSegments:")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  \tCHAIN\tLSN\tCOMMITS\tCOUNT\tSIZE\tWHY")
	for _, r := range segmentRanges(pl.Segments) {
		verdict, why := "keep", r.keep
		if r.drop != "" {
			verdict, why = "DELETE", r.drop
			goSegs += r.n
			goBytes += r.bytes
		}
		fmt.Fprintf(tw, "  %s\t%d\t%s..%s\t%s..%s\t%d\t%s\t%s\n", verdict, r.chain, r.from, r.to, at(r.first), at(r.last), r.n, human.Bytes(r.bytes), why)
	}
	tw.Flush()
	if len(pl.Segments) == 0 {
		fmt.Fprintln(w, "  none")
	}

	if !pl.SequenceCut.IsZero() {
		fmt.Fprintf(w, "\nSequence snapshots: DELETE those taken before %s (older than the newest one at or before the oldest base kept for point-in-time recovery, less %s)\n", at(pl.SequenceCut), retention.SequenceMargin)
	}
	for _, r := range pl.Refused {
		fmt.Fprintf(w, "\nREFUSED %s\n", r)
	}
	if pl.Problem != "" {
		fmt.Fprintf(w, "\nREFUSED the whole plan: %s\n", pl.Problem)
	}
	fmt.Fprintf(w, "\nwould delete %d base backup(s) and %d segment(s), %s\n", goBases, goSegs, human.Bytes(goBytes))
}

// segRange is a run of segments of one chain, one after the other, with
// the same verdict.
type segRange struct {
	chain       int64
	from, to    fmt.Stringer
	first, last time.Time
	n           int
	bytes       int64
	keep, drop  string
}

func segmentRanges(vs []retention.SegmentVerdict) []segRange {
	var out []segRange
	var prev store.Segment
	for i, v := range vs {
		s := v.Segment
		if i > 0 && s.ChainID == prev.ChainID && s.PrevEndLSN == prev.EndLSN {
			r := &out[len(out)-1]
			if r.keep == v.Keep && r.drop == v.Drop {
				r.to, r.last, r.n, r.bytes = s.EndLSN, s.LastCommitAt, r.n+1, r.bytes+s.StoredBytes
				prev = s
				continue
			}
		}
		out = append(out, segRange{chain: s.ChainID, from: s.PrevEndLSN, to: s.EndLSN, first: s.FirstCommitAt, last: s.LastCommitAt,
			n: 1, bytes: s.StoredBytes, keep: v.Keep, drop: v.Drop})
		prev = s
	}
	return out
}

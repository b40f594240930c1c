package retention

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"

	"github.com/btfu/btfu/coverage"
	"github.com/btfu/btfu/store"
)

// year drives a source through simulated days with a clock the test
// controls: every day at 03:00 in loc a base backup (or, from failFrom
// on, a failed one), four segments a day (the first holds the base's
// consistent point), and retention applied right after the base, as the
// engine does. On day switchAt the slot is lost: the chain ends and a new
// one starts with that day's base.
type year struct {
	f        *fixture
	loc      *time.Location
	policy   Policy
	lsn      pglogrepl.LSN
	chain    string
	failFrom time.Time
}

func newYear(t *testing.T, loc *time.Location, p Policy, first time.Time) *year {
	y := &year{f: newFixture(t), loc: loc, policy: p, lsn: 1000, chain: "c0"}
	y.f.chain(y.chain, y.lsn, first.Add(-time.Hour))
	return y
}

// segment stores the chain's next segment of 100 LSNs, its commits from
// first to last.
func (y *year) segment(first, last time.Time) {
	f := y.f
	f.t.Helper()
	prev := f.tails[y.chain]
	s, err := f.meta.AddSegment(f.ctx, store.Segment{SourceID: f.src, ChainID: f.chains[y.chain], FormatVersion: 1,
		ArtifactKey: "src/segments/" + y.chain + "-" + last.UTC().Format("20060102T1504") + ".ndjson.zst", PrevEndLSN: prev,
		FirstCommitLSN: prev + 1, LastCommitLSN: prev + 99, EndLSN: prev + 100, FirstCommitAt: first, LastCommitAt: last,
		TxCount: 1, ChangeCount: 1, RawBytes: 20, StoredBytes: 10})
	f.must(err)
	f.put(s.ArtifactKey)
	f.tails[y.chain], f.segs[s.ArtifactKey] = prev+100, s
}

// run simulates the days from..to (inclusive, dates in loc).
func (y *year) run(from, to time.Time, newChainOn time.Time) {
	f := y.f
	f.t.Helper()
	for d := from; !d.After(to); d = d.AddDate(0, 0, 1) {
		at := time.Date(d.Year(), d.Month(), d.Day(), 3, 0, 0, 0, y.loc)
		if at.Equal(newChainOn) {
			f.endChain(y.chain, at.Add(-2*time.Hour))
			y.chain = "c" + at.Format("0102")
			f.chain(y.chain, f.tails["c0"]+1000000, at.Add(-time.Minute))
		}
		// The segment holding the base's consistent point, then the base.
		c := f.tails[y.chain] + 50
		y.segment(at.Add(-10*time.Minute), at.Add(10*time.Minute))
		name := at.Format("2006-01-02")
		status := store.BackupComplete
		if !y.failFrom.IsZero() && !at.Before(y.failFrom) {
			status, name = store.BackupFailed, "failed-"+name
		}
		b, err := f.meta.CreateBaseBackup(f.ctx, store.BaseBackup{SourceID: f.src, ChainID: f.chains[y.chain], ConsistentLSN: c,
			SnapshotTime: at, StartedAt: at, FinishedAt: at.Add(5 * time.Minute), Status: status, SizeBytes: 1000,
			ArtifactKey: "src/base/" + name + ".dump"})
		f.must(err)
		f.put(b.ArtifactKey)
		f.bases[name] = b
		now := at.Add(15 * time.Minute)
		if _, err := Apply(f.ctx, f.meta, f.arts, f.src, y.policy, now, nil); err != nil {
			f.t.Fatalf("%s: %v", now, err)
		}
		for _, h := range []int{9, 15, 21} {
			t := at.Add(time.Duration(h-3) * time.Hour)
			y.segment(t.Add(-time.Hour), t)
		}
	}
}

// left returns the names of the complete base backups left.
func (y *year) left() []string {
	_, bases, _ := y.f.state()
	var out []string
	for name, b := range y.f.bases {
		if b.Status == store.BackupComplete && slices.ContainsFunc(bases, func(x store.BaseBackup) bool { return x.ID == b.ID }) {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}

// restorable asserts that each kept base restores to its snapshot time
// and that every hour of [from, now] is restorable.
func (y *year) restorable(from, now time.Time) {
	f := y.f
	f.t.Helper()
	chains, bases, segs := f.state()
	rs := coverage.Compute(chains, bases, segs)
	for _, b := range bases {
		if b.Status == store.BackupComplete && !covers(rs, b.SnapshotTime) {
			f.t.Errorf("kept base %s is not restorable to its snapshot: coverage %v", b.SnapshotTime.In(y.loc), f.cover(rs))
		}
	}
	for at := from; !at.After(now); at = at.Add(time.Hour) {
		if !covers(rs, at) {
			f.t.Errorf("%s is inside the point-in-time window and not restorable", at.In(y.loc))
			return
		}
	}
}

// A year of daily base backups with 7 dailies, 4 weeklies, 12 monthlies,
// the two newest and two days of point-in-time recovery, in Paris time
// (two DST changes), and a slot lost in July.
func TestCalendarRetentionOverAYear(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	p := Policy{KeepBaseBackups: 2, KeepFor: 2 * day, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12, Location: paris}
	first := time.Date(2025, 1, 1, 3, 0, 0, 0, paris)
	last := time.Date(2025, 12, 31, 3, 0, 0, 0, paris) // a Wednesday
	y := newYear(t, paris, p, first)
	y.run(first, last, time.Date(2025, 7, 19, 3, 0, 0, 0, paris))

	want := []string{
		"2025-01-31", "2025-02-28", "2025-03-31", "2025-04-30", "2025-05-31", "2025-06-30", // monthly, chain c0
		"2025-07-31", "2025-08-31", "2025-09-30", "2025-10-31", "2025-11-30", // monthly, chain c0719
		"2025-12-14", "2025-12-21", // weekly (Sundays: ISO weeks end on Sunday)
		"2025-12-25", "2025-12-26", "2025-12-27", "2025-12-28", "2025-12-29", "2025-12-30", "2025-12-31", // daily
	}
	if got := y.left(); !slices.Equal(got, want) {
		t.Errorf("kept base backups\n %v\nwant\n %v", got, want)
	}
	now := last.Add(15 * time.Minute)
	y.restorable(now.Add(-p.KeepFor), now)
	// Point-in-time recovery from Dec 29 (4 segments a day), one segment
	// for each older restore point (17): the stored segments do not grow
	// with the year.
	if _, _, segs := y.f.state(); len(segs) != 3*4+17 {
		t.Errorf("%d segments left, want 29", len(segs))
	}

	// Then base backups fail for a month while the stream goes on: the
	// dailies and the rest survive (the last 7 days that have a base), and
	// point-in-time recovery reaches back to the newest base, Dec 31, and
	// its window's start stays restorable from it.
	y.failFrom = last.AddDate(0, 0, 1)
	end := last.AddDate(0, 1, 0)
	y.run(y.failFrom, end, time.Time{})
	if got := y.left(); !slices.Equal(got, want) {
		t.Errorf("after a month of failed base backups, kept\n %v\nwant\n %v", got, want)
	}
	now = end.Add(15 * time.Minute)
	y.restorable(now.Add(-p.KeepFor), now)
	_, bases, _ := y.f.state()
	failed := 0
	for _, b := range bases {
		if b.Status == store.BackupFailed {
			failed++
		}
	}
	if failed != 1 {
		t.Errorf("%d failed base backups left, want only today's", failed)
	}
}

// Calendar days are the source's: two bases an hour apart around
// midnight in Paris are one day in UTC and two in Paris.
func TestCalendarPeriodsInTheSourceTimeZone(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		loc  *time.Location
		want []string
	}{
		{time.UTC, []string{"d0", "d3"}},
		{paris, []string{"d2", "d3"}},
	} {
		t.Run(c.loc.String(), func(t *testing.T) {
			f := newFixture(t)
			at := func(d, h, m int) time.Time { return time.Date(2026, 11, d, h, m, 0, 0, time.UTC) }
			f.chain("A", 100, at(20, 0, 0))
			f.base("d0", "A", 100, at(20, 12, 0), store.BackupComplete, true)
			f.seg("a-1", "A", 200, at(21, 9, 0))
			f.base("d1", "A", 200, at(21, 10, 0), store.BackupComplete, true)
			f.seg("a-2", "A", 300, at(21, 22, 0))
			f.base("d2", "A", 300, at(21, 22, 30), store.BackupComplete, true) // 23:30 in Paris
			f.seg("a-3", "A", 400, at(21, 23, 0))
			f.base("d3", "A", 400, at(21, 23, 30), store.BackupComplete, true) // 00:30 on the 22nd in Paris
			f.seg("a-4", "A", 500, at(22, 1, 0))
			rep, err := Apply(f.ctx, f.meta, f.arts, f.src, Policy{KeepBaseBackups: 1, KeepDaily: 2, Location: c.loc}, at(22, 2, 0), nil)
			f.must(err)
			if got := names(f.bases, baseID, rep.Kept); !slices.Equal(got, c.want) {
				t.Errorf("kept %v, want %v", got, c.want)
			}
		})
	}
}

// The chain that reaches now keeps its newest base whatever the policy
// says, and retention reports that it refused to delete it.
func TestNeverDeletesTheOnlyChainThatReachesNow(t *testing.T) {
	f := newFixture(t)
	// O is open and reaches now; its only base is old
	// and the ended chain E's base is newer (a clock stepped back).
	f.chain("O", 100, ago(40*day))
	f.base("o1", "O", 100, ago(40*day), store.BackupComplete, true)
	f.seg("o-1", "O", 300, ago(time.Hour))
	f.chain("E", 5000, ago(9*day))
	f.base("e1", "E", 5000, ago(9*day), store.BackupComplete, true)
	f.seg("e-1", "E", 5100, ago(9*day))
	f.endChain("E", ago(9*day))
	p := Policy{KeepBaseBackups: 1, KeepDaily: 1} // no keep_for: its window start would keep o1
	pl, err := MakePlan(f.ctx, f.meta, f.src, p, now)
	f.must(err)
	if len(pl.Refused) != 1 || !strings.Contains(pl.Refused[0], "newest of the chain that reaches now") {
		t.Errorf("refused %q", pl.Refused)
	}
	rep, err := Apply(f.ctx, f.meta, f.arts, f.src, p, now, nil)
	f.must(err)
	if got := names(f.bases, baseID, rep.Kept); !slices.Equal(got, []string{"e1", "o1"}) || len(rep.Refused) != 1 {
		t.Errorf("kept %v, refused %q", got, rep.Refused)
	}
	chains, bases, segs := f.state()
	if rs := coverage.Compute(chains, bases, segs); !covers(rs, ago(time.Hour)) {
		t.Errorf("now is not restorable: %v", f.cover(rs))
	}
}

// The last check refuses a plan that would leave now unrestorable, and
// Apply then deletes nothing.
func TestCheckRefusesAPlanThatLosesNow(t *testing.T) {
	f := newFixture(t)
	standard(f)
	chains, bases, segs := f.state()
	p := Policy{KeepBaseBackups: 1}
	pl := decide(chains, bases, segs, p, now)
	if pl.Problem != "" {
		t.Fatalf("a sound plan refused: %s", pl.Problem)
	}
	// A broken rule: every complete base goes.
	for i := range pl.Bases {
		if pl.Bases[i].Base.Status == store.BackupComplete {
			pl.Bases[i].Keep, pl.Bases[i].Drop = nil, "broken rule"
		}
	}
	before := coverage.Compute(slices.Clone(chains), bases, segs)
	if why := pl.check(chains, before, segs, p, now); !strings.Contains(why, "no longer") {
		t.Errorf("check passed a plan deleting every base: %q", why)
	}
}

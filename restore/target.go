package restore

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
)

var timeLayouts = []string{
	time.RFC3339Nano,
	"2006-01-02 15:04:05.999999999Z07:00",
	"2006-01-02 15:04:05.999999999Z07",
	"2006-01-02 15:04:05.999999999 Z07:00",
	"2006-01-02 15:04:05.999999999 MST",
	"2006-01-02T15:04:05.999999999Z07",
}

// ParseTime reads RFC 3339 and PostgreSQL's usual timestamptz forms, and
// a time relative to now ("2m ago", "1h30m ago", "90 seconds ago", "-5m").
// A time without a zone is refused with an example, never guessed.
func ParseTime(s string) (time.Time, error) { return parseTimeAt(s, time.Now()) }

// relativeRE is one amount and unit of a relative time.
var relativeRE = regexp.MustCompile(`(\d+(?:\.\d+)?)\s*([a-z]+)`)

var relativeUnits = map[string]time.Duration{
	"s": time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hr": time.Hour, "hrs": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": 24 * time.Hour, "day": 24 * time.Hour, "days": 24 * time.Hour,
}

// parseRelative reads "<amounts> ago" or "-<amounts>" as a time before
// now; ok is false when s is not written that way.
func parseRelative(s string, now time.Time) (t time.Time, ok bool, err error) {
	l := strings.ToLower(strings.TrimSpace(s))
	rest, ago := strings.CutSuffix(l, "ago")
	if !ago {
		if rest, ago = strings.CutPrefix(l, "-"); !ago {
			return time.Time{}, false, nil
		}
	}
	rest = strings.TrimSpace(rest)
	var d time.Duration
	parts := relativeRE.FindAllStringSubmatchIndex(rest, -1)
	end := 0
	for _, p := range parts {
		// Between amounts: spaces, commas or "and".
		if gap := strings.Trim(rest[end:p[0]], " ,"); gap != "" && (end == 0 || gap != "and") {
			return time.Time{}, false, nil
		}
		unit, known := relativeUnits[rest[p[4]:p[5]]]
		if !known {
			return time.Time{}, true, fmt.Errorf("%q: unknown unit %q; use s, m, h or d, e.g. '5m ago'", s, rest[p[4]:p[5]])
		}
		n, err := strconv.ParseFloat(rest[p[2]:p[3]], 64)
		if err != nil {
			return time.Time{}, false, nil
		}
		d += time.Duration(n * float64(unit))
		end = p[1]
	}
	if len(parts) == 0 || strings.TrimSpace(rest[end:]) != "" {
		return time.Time{}, false, nil
	}
	return now.Add(-d), true, nil
}

func parseTimeAt(s string, now time.Time) (time.Time, error) {
	if t, ok, err := parseRelative(s, now); ok {
		return t, err
	}
	s = strings.TrimSpace(s)
	for _, l := range timeLayouts {
		if t, err := time.Parse(l, s); err == nil {
			if strings.HasSuffix(l, "MST") && t.Location().String() != "UTC" && !strings.HasSuffix(s, "UTC") {
				continue // an unknown abbreviation would be read as UTC silently
			}
			return t, nil
		}
	}
	for _, l := range []string{"2006-01-02 15:04:05.999999999", "2006-01-02T15:04:05.999999999", "2006-01-02 15:04"} {
		if _, err := time.Parse(l, s); err == nil {
			return time.Time{}, fmt.Errorf("%q has no time zone; add one, e.g. '%s+00' or '%sZ'", s, s, strings.Replace(s, " ", "T", 1))
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a time; write it like '2026-11-23 14:05:00+00', 2026-11-23T14:05:00Z or '5m ago'", s)
}

// ParseLSN reads an LSN such as 0/3000060.
func ParseLSN(s string) (pglogrepl.LSN, error) {
	l, err := pglogrepl.ParseLSN(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not an LSN; write it like 0/3000060", s)
	}
	return l, nil
}

// ParseTarget builds a Target from exactly one of a time, an LSN or
// latest; errors name the flag.
func ParseTarget(at, lsn string, latest bool) (Target, error) {
	n := 0
	for _, set := range []bool{at != "", lsn != "", latest} {
		if set {
			n++
		}
	}
	if n != 1 {
		return Target{}, errors.New("give exactly one of --time, --lsn or --latest")
	}
	switch {
	case latest:
		return Target{Latest: true}, nil
	case lsn != "":
		l, err := ParseLSN(lsn)
		if err != nil {
			return Target{}, fmt.Errorf("--lsn %w", err)
		}
		return Target{LSN: l}, nil
	}
	t, err := ParseTime(at)
	if err != nil {
		return Target{}, fmt.Errorf("--time %w", err)
	}
	return Target{Time: t}, nil
}

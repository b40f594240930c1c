package restore

import (
	"errors"
	"fmt"
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

// ParseTime reads RFC 3339 and PostgreSQL's usual timestamptz forms. A
// time without a zone is refused with an example, never guessed.
func ParseTime(s string) (time.Time, error) {
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
	return time.Time{}, fmt.Errorf("%q is not a time; write it like '2026-11-23 14:05:00+00' or 2026-11-23T14:05:00Z", s)
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

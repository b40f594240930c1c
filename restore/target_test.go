package restore

import (
	"strings"
	"testing"
	"time"
)

func TestParseTimeRelative(t *testing.T) {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	for in, ago := range map[string]time.Duration{
		"2m ago":              2 * time.Minute,
		"2 minutes ago":       2 * time.Minute,
		"  90 seconds ago ":   90 * time.Second,
		"1h30m ago":           90 * time.Minute,
		"1 hour, 5 mins ago":  65 * time.Minute,
		"1 day and 2 hrs ago": 26 * time.Hour,
		"1h, and 1m ago":      61 * time.Minute,
		"-5m":                 5 * time.Minute,
		"-1.5h":               90 * time.Minute,
		"2M AGO":              2 * time.Minute,
	} {
		got, err := parseTimeAt(in, now)
		if err != nil || !got.Equal(now.Add(-ago)) {
			t.Errorf("%q: %v, %v; want %v", in, got, err, now.Add(-ago))
		}
	}
	for in, want := range map[string]string{
		"2 fortnights ago":    `unknown unit "fortnights"`,
		"ago":                 "is not a time",
		"yesterday":           "is not a time",
		"2m":                  "is not a time",
		"2m ago please":       "is not a time",
		"2026-11-23 14:05:00": "has no time zone",
	} {
		if _, err := parseTimeAt(in, now); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want an error containing %q", in, err, want)
		}
	}
	if got, err := parseTimeAt("2026-11-23 14:05:00+01", now); err != nil || !got.Equal(time.Date(2026, 11, 23, 13, 5, 0, 0, time.UTC)) {
		t.Errorf("absolute time: %v %v", got, err)
	}
}

func TestParseTargetTakesRelativeTimes(t *testing.T) {
	tg, err := ParseTarget("10m ago", "", false)
	if d := time.Since(tg.Time) - 10*time.Minute; err != nil || d < 0 || d > 10*time.Second {
		t.Fatalf("--time '10m ago': %v %v", tg, err)
	}
}

package config

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// ByteSize is a size in bytes, written in config.toml as "64MiB", "512MB",
// "1GiB" or a plain integer.
type ByteSize int64

var sizeRE = regexp.MustCompile(`^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$`)

var sizeUnits = map[string]float64{
	"": 1, "B": 1,
	"KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12,
	"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40,
}

// ParseByteSize reads "64MiB", "1.5GB", "1048576".
func ParseByteSize(s string) (ByteSize, error) {
	m := sizeRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("%q is not a size; write it like \"64MiB\", \"512MB\" or \"1GiB\"", s)
	}
	n, _ := strconv.ParseFloat(m[1], 64)
	return ByteSize(n * sizeUnits[m[2]]), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (b *ByteSize) UnmarshalText(text []byte) error {
	v, err := ParseByteSize(string(text))
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (b ByteSize) MarshalText() ([]byte, error) { return []byte(b.String()), nil }

// String prints the size in the largest binary unit that divides it.
func (b ByteSize) String() string {
	for _, u := range []struct {
		name string
		n    int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}} {
		if b != 0 && int64(b)%u.n == 0 {
			return fmt.Sprintf("%d%s", int64(b)/u.n, u.name)
		}
	}
	return fmt.Sprintf("%dB", int64(b))
}

// Duration is a time.Duration written as "1s", "500ms", "10m", or with a
// day suffix "7d".
type Duration time.Duration

// ParseDuration reads Go durations plus whole days ("7d").
func ParseDuration(s string) (Duration, error) {
	s = strings.TrimSpace(s)
	if strings.HasSuffix(s, "d") {
		if n, err := strconv.Atoi(strings.TrimSuffix(s, "d")); err == nil && n >= 0 {
			return Duration(time.Duration(n) * 24 * time.Hour), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; write it like \"1s\", \"500ms\", \"10m\" or \"7d\"", s)
	}
	return Duration(d), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// String prints whole days as "Nd", everything else as time.Duration does.
func (d Duration) String() string {
	td := time.Duration(d)
	if td > 0 && td%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", td/(24*time.Hour))
	}
	return td.String()
}

// D returns the value as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

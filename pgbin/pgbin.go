// Package pgbin finds PostgreSQL client and server programs (pg_dump,
// pg_restore, initdb, postgres) on this machine and reports their versions.
//
// Several majors are often installed side by side (Debian's
// /usr/lib/postgresql/<major>/bin, RHEL's /usr/pgsql-<major>/bin, Homebrew's
// postgresql@<major>). pg_dump must be at least the server's major version,
// so callers ask for a program by name and minimum major and get the oldest
// install that satisfies it, or all installs for display.
package pgbin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Program is one installed PostgreSQL program.
type Program struct {
	Name    string // e.g. "pg_dump"
	Path    string // absolute path
	Version string // e.g. "15.18"
	Major   int    // e.g. 15
}

func (p Program) String() string {
	return fmt.Sprintf("%s %s (%s)", p.Name, p.Version, p.Path)
}

// EnvBinDir names an environment variable that, when set, is searched
// before every other place.
const EnvBinDir = "BTFU_PG_BIN"

// searchDirs lists the directories searched, in order: $BTFU_PG_BIN, $PATH,
// then the usual per-major install locations.
func searchDirs() []string {
	var dirs []string
	if d := os.Getenv(EnvBinDir); d != "" {
		dirs = append(dirs, d)
	}
	dirs = append(dirs, filepath.SplitList(os.Getenv("PATH"))...)
	for _, pattern := range []string{
		"/usr/lib/postgresql/*/bin",
		"/usr/pgsql-*/bin",
		"/usr/local/pgsql/bin",
		"/opt/homebrew/opt/postgresql@*/bin",
		"/usr/local/opt/postgresql@*/bin",
	} {
		m, _ := filepath.Glob(pattern)
		sort.Strings(m)
		dirs = append(dirs, m...)
	}
	return dirs
}

// All returns every distinct install of the named program, sorted by major
// version (oldest first). Programs that cannot report a version are skipped.
func All(ctx context.Context, name string) []Program {
	seen := map[string]bool{}
	var out []Program
	for _, dir := range searchDirs() {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, name)
		fi, err := os.Stat(p)
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			continue
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			real = p
		}
		if seen[real] {
			continue
		}
		seen[real] = true
		prog, err := Inspect(ctx, p)
		if err != nil {
			continue
		}
		out = append(out, prog)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Major < out[j].Major })
	return out
}

// ErrNotFound is returned when no install satisfies a request.
var ErrNotFound = errors.New("program not found")

// Find returns the oldest install of name whose major version is at least
// minMajor (0 means any, in which case the newest is returned). The error
// names what was found and how to fix it.
func Find(ctx context.Context, name string, minMajor int) (Program, error) {
	all := All(ctx, name)
	if len(all) == 0 {
		return Program{}, fmt.Errorf("%s: %w in $PATH or /usr/lib/postgresql/*/bin; install the PostgreSQL client (Debian: apt-get install postgresql-client) or set %s", name, ErrNotFound, EnvBinDir)
	}
	if minMajor <= 0 {
		return all[len(all)-1], nil
	}
	for _, p := range all {
		if p.Major >= minMajor {
			return p, nil
		}
	}
	var found []string
	for _, p := range all {
		if !slices.Contains(found, p.Version) { // Debian's wrapper and the binary it runs
			found = append(found, p.Version)
		}
	}
	return Program{}, fmt.Errorf("%s: %w: PostgreSQL %d needs %s %d or newer, only %s %s installed; install the PostgreSQL %d client (Debian: apt-get install postgresql-client-%d) or set %s",
		name, ErrNotFound, minMajor, name, minMajor, name, strings.Join(found, ", "), minMajor, minMajor, EnvBinDir)
}

var versionRE = regexp.MustCompile(`\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?`)

// Inspect runs "path --version" and parses the answer.
func Inspect(ctx context.Context, path string) (Program, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		return Program{}, fmt.Errorf("%s --version: %w", path, err)
	}
	v, major, err := ParseVersion(string(out))
	if err != nil {
		return Program{}, fmt.Errorf("%s --version: %w", path, err)
	}
	return Program{Name: filepath.Base(path), Path: path, Version: v, Major: major}, nil
}

// ParseVersion reads the output of a PostgreSQL program's --version, such as
// "pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)".
func ParseVersion(s string) (version string, major int, err error) {
	m := versionRE.FindStringSubmatch(s)
	if m == nil {
		return "", 0, fmt.Errorf("unrecognised version output %q", strings.TrimSpace(s))
	}
	major, _ = strconv.Atoi(m[1])
	version = m[1]
	if m[2] != "" {
		version += "." + m[2]
	}
	return version, major, nil
}

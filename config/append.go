package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// SourceBlock is what the TUI's register form writes as a new [[source]].
type SourceBlock struct {
	Name          string
	DSN           string
	IncludeTables []string
	ExcludeTables []string
	Schedule      string // "" keeps the default
}

// Text renders the block as TOML.
func (b SourceBlock) Text() string {
	var s strings.Builder
	s.WriteString("\n[[source]]\n")
	fmt.Fprintf(&s, "name = %s\n", strconv.Quote(b.Name))
	fmt.Fprintf(&s, "dsn = %s\n", strconv.Quote(b.DSN))
	list := func(key string, v []string) {
		if len(v) == 0 {
			return
		}
		q := make([]string, len(v))
		for i, x := range v {
			q[i] = strconv.Quote(x)
		}
		fmt.Fprintf(&s, "%s = [%s]\n", key, strings.Join(q, ", "))
	}
	list("include_tables", b.IncludeTables)
	list("exclude_tables", b.ExcludeTables)
	if b.Schedule != "" {
		fmt.Fprintf(&s, "schedule = %s\n", strconv.Quote(b.Schedule))
	}
	return s.String()
}

// AppendSource adds b at the end of the config file at path, keeping every
// existing byte (comments, order, formatting). The resulting file is
// checked whole before it replaces the old one (atomically, same mode); a
// duplicate name or any problem leaves the file untouched. It returns the
// new configuration.
func AppendSource(path string, b SourceBlock) (*Config, error) {
	old, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	cur, err := Parse(path, old)
	if err != nil {
		return nil, fmt.Errorf("%s has problems already; fix them first: %w", path, err)
	}
	for _, s := range cur.Sources {
		if s.Name == b.Name {
			return nil, fmt.Errorf("a source named %q is already in %s; choose another name", b.Name, path)
		}
	}
	data := append([]byte(nil), old...)
	if len(data) > 0 && !bytes.HasSuffix(data, []byte("\n")) {
		data = append(data, '\n')
	}
	data = append(data, b.Text()...)
	cfg, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(fi.Mode().Perm()); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return nil, err
	}
	if err := tmp.Close(); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("replace %s: %w", path, err)
	}
	return cfg, nil
}

package backup

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/redact"
)

// DumpEnv prepares the source's connection for a PostgreSQL client program
// (pg_dump, pg_restore): dsn is the source's DSN, in its own form (URL or
// keyword/value), with any password removed, for --dbname; env holds
// "PGPASSWORD=..." when there is a password (the password_file one wins
// over one in the DSN), to append to the program's environment. The
// password thus never appears in a command line, which every local user
// can read. It is also registered with package redact.
func DumpEnv(src *config.Source) (dsn string, env []string, err error) {
	var password string
	if rest, ok := cutScheme(src.DSN); ok {
		dsn, password, err = stripURLPassword(src.DSN[:len(src.DSN)-len(rest)], rest)
	} else {
		dsn, password, err = stripKVPassword(src.DSN)
	}
	if err != nil {
		// The message never quotes the DSN: it may hold the password.
		return "", nil, fmt.Errorf("source.%s.dsn: %w", src.Name, err)
	}
	if src.Password != "" {
		password = src.Password
	}
	if password != "" {
		redact.Register(password)
		env = []string{"PGPASSWORD=" + password}
	}
	return dsn, env, nil
}

func cutScheme(dsn string) (string, bool) {
	if rest, ok := strings.CutPrefix(dsn, "postgresql://"); ok {
		return rest, true
	}
	return strings.CutPrefix(dsn, "postgres://")
}

// stripURLPassword removes the password from a URL's user info and query,
// parsing like libpq (and pgconn): the user info ends at the first '@'
// before any '/', and values are percent-decoded ('+' stays '+'). Every
// other byte is kept as written.
func stripURLPassword(scheme, rest string) (dsn, password string, err error) {
	if i := strings.IndexAny(rest, "@/"); i >= 0 && rest[i] == '@' {
		if user, pass, ok := strings.Cut(rest[:i], ":"); ok {
			if password, err = url.PathUnescape(pass); err != nil {
				return "", "", fmt.Errorf("invalid percent-encoding in the URL's password")
			}
			rest = user + rest[i:]
		}
	}
	if base, query, ok := strings.Cut(rest, "?"); ok {
		var keep []string
		for _, p := range strings.Split(query, "&") {
			k, v, _ := strings.Cut(p, "=")
			if k != "password" {
				keep = append(keep, p)
				continue
			}
			if password, err = url.PathUnescape(v); err != nil {
				return "", "", fmt.Errorf("invalid percent-encoding in the URL's password parameter")
			}
		}
		rest = base
		if len(keep) > 0 {
			rest += "?" + strings.Join(keep, "&")
		}
	}
	return scheme + rest, password, nil
}

// stripKVPassword removes password=... from a keyword/value connection
// string and writes the others back, each value single-quoted.
func stripKVPassword(s string) (dsn, password string, err error) {
	pairs, err := parseKV(s)
	if err != nil {
		return "", "", err
	}
	var out []string
	for _, p := range pairs {
		if p[0] == "password" {
			password = p[1]
			continue
		}
		v := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(p[1])
		out = append(out, p[0]+"='"+v+"'")
	}
	return strings.Join(out, " "), password, nil
}

// parseKV splits a keyword/value connection string the way libpq does:
// key = value pairs separated by white space, values either single-quoted
// or running to the next white space, a backslash escaping the next byte.
// Errors never quote a value.
func parseKV(s string) ([][2]string, error) {
	var pairs [][2]string
	isSpace := func(c byte) bool { return strings.IndexByte(" \t\n\r\f\v", c) >= 0 }
	i := 0
	skip := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	for {
		skip()
		if i == len(s) {
			return pairs, nil
		}
		start := i
		for i < len(s) && s[i] != '=' && !isSpace(s[i]) {
			i++
		}
		key := s[start:i]
		skip()
		if i == len(s) || s[i] != '=' {
			return nil, fmt.Errorf("connection string has a word without \"=\" (want key=value pairs)")
		}
		i++
		skip()
		quoted := i < len(s) && s[i] == '\''
		if quoted {
			i++
		}
		var val strings.Builder
		for ; i < len(s); i++ {
			c := s[i]
			if c == '\\' && i+1 < len(s) {
				i++
				val.WriteByte(s[i])
				continue
			}
			if quoted && c == '\'' || !quoted && isSpace(c) {
				break
			}
			val.WriteByte(c)
		}
		if quoted {
			if i == len(s) {
				return nil, fmt.Errorf("unterminated quoted value for %q in connection string", key)
			}
			i++ // the closing quote
		}
		pairs = append(pairs, [2]string{key, val.String()})
	}
}

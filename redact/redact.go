// Package redact keeps passwords out of logs, the TUI and error messages.
//
// Two mechanisms work together. DSN rewrites a connection string so its
// password shows as "xxxxx". Secrets registered with Register (passwords
// read from files or the environment, S3 secret keys) are replaced wherever
// they appear in a string passed through String, including inside error
// texts produced by libraries; Handler applies String to every slog record.
package redact

import (
	"context"
	"log/slog"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
)

// Mask replaces a secret.
const Mask = "xxxxx"

var (
	mu      sync.RWMutex
	secrets []string
)

// Register remembers a secret so String masks it. Secrets shorter than four
// characters are masked only inside DSNs: masking every "a" in a log line
// would garble it and hide nothing.
func Register(secret string) {
	if len(secret) < 4 {
		return
	}
	mu.Lock()
	defer mu.Unlock()
	for _, s := range secrets {
		if s == secret {
			return
		}
	}
	secrets = append(secrets, secret)
	// Longest first, so a secret that contains another is masked whole.
	sort.Slice(secrets, func(i, j int) bool { return len(secrets[i]) > len(secrets[j]) })
}

// String masks every registered secret and every DSN password in s.
func String(s string) string {
	s = DSNsIn(s)
	mu.RLock()
	defer mu.RUnlock()
	for _, sec := range secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, Mask)
		}
		if enc := url.QueryEscape(sec); enc != sec && strings.Contains(s, enc) {
			s = strings.ReplaceAll(s, enc, Mask)
		}
	}
	return s
}

var (
	// postgres://user:secret@host → the password part of a URL's userinfo.
	urlPassRE = regexp.MustCompile(`((?:postgres|postgresql)://[^:/@\s]*:)([^@\s]*)(@)`)
	// password=secret or password='se cret' in keyword/value strings and
	// password=secret in URL query parameters.
	kvPassRE = regexp.MustCompile(`(?i)(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]+)`)
)

// DSNsIn masks passwords of any connection strings found inside s.
func DSNsIn(s string) string {
	s = urlPassRE.ReplaceAllString(s, "${1}"+Mask+"${3}")
	return kvPassRE.ReplaceAllString(s, "${1}"+Mask)
}

// DSN returns dsn with its password masked, in URL or keyword/value form.
func DSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), Mask)
			}
		}
		q := u.Query()
		if q.Has("password") {
			q.Set("password", Mask)
			u.RawQuery = q.Encode()
		}
		return u.String()
	}
	return DSNsIn(dsn)
}

// Handler wraps a slog.Handler and masks secrets in the message and in
// every string, error and Stringer attribute.
type Handler struct{ inner slog.Handler }

// NewHandler returns a redacting wrapper around h.
func NewHandler(h slog.Handler) *Handler { return &Handler{inner: h} }

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	out := slog.NewRecord(r.Time, r.Level, String(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(attr(a))
		return true
	})
	return h.inner.Handle(ctx, out)
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(as))
	for i, a := range as {
		clean[i] = attr(a)
	}
	return &Handler{inner: h.inner.WithAttrs(clean)}
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name)}
}

func attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, String(v.String()))
	case slog.KindGroup:
		g := v.Group()
		clean := make([]any, len(g))
		for i, ga := range g {
			clean[i] = attr(ga)
		}
		return slog.Group(a.Key, clean...)
	case slog.KindAny:
		switch x := v.Any().(type) {
		case error:
			return slog.String(a.Key, String(x.Error()))
		case interface{ String() string }:
			return slog.String(a.Key, String(x.String()))
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}

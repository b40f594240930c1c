// Package logging builds btfu's slog logger: JSON (or text) lines on
// stderr when headless, a file while the TUI owns the screen, and always
// through redact.Handler so no password reaches a log.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/redact"
)

// ParseLevel maps debug/info/warn/error to a slog.Level.
func ParseLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// New returns a logger writing to w in the configured format.
func New(cfg config.Log, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: ParseLevel(cfg.Level)}
	var h slog.Handler
	if cfg.Format == "text" {
		h = slog.NewTextHandler(w, opts)
	} else {
		h = slog.NewJSONHandler(w, opts)
	}
	return slog.New(redact.NewHandler(h))
}

// ToFile returns a logger appending to cfg.File (created 0600), for when
// the terminal belongs to the TUI, and a function that closes the file.
func ToFile(cfg config.Log) (*slog.Logger, func() error, error) {
	f, err := os.OpenFile(cfg.File, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("open log file %s (log.file): %w", cfg.File, err)
	}
	return New(cfg, f), f.Close, nil
}

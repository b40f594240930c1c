package engine

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/btfu/btfu/config"
)

// A register form that does not make a valid source is refused before
// anything connects, as ErrSourceBlock naming the key, so the API answers
// 400 and the TUI shows the fix.
func TestProbeSourceRefusesABadBlock(t *testing.T) {
	_, err := ProbeSource(context.Background(), config.SourceBlock{Name: "shop", DSN: "postgres://u@h/d", Schedule: "every 5m"})
	if !errors.Is(err, ErrSourceBlock) || !strings.Contains(err.Error(), "schedule") {
		t.Fatalf("bad schedule: %v", err)
	}
}

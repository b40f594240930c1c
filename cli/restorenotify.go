package cli

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/notify"
	"github.com/btfu/btfu/notify/kind"
	"github.com/btfu/btfu/restore"
)

// notifyRestore tells the configured channels that a restore run by this
// command finished or failed, as the engine does for the restores it runs
// (the TUI's, the control API's). It waits a little for the delivery: the
// command exits right after.
func notifyRestore(cfg *config.Config, source string, sum restore.Summary, err error, log *slog.Logger) {
	if len(cfg.Notify.Channels) == 0 {
		return
	}
	n := notify.New(func() *config.Config { return cfg }, notify.Options{Log: log, Attempts: 3, Backoff: time.Second})
	ev := notify.Event{At: time.Now(), Source: source, Level: slog.LevelInfo, Kind: string(kind.RestoreFinished),
		Message: fmt.Sprintf("restore of %s finished: %d transactions, %d rows in %s", source, sum.Transactions, sum.Rows, sum.Took.Round(time.Millisecond)),
		Attrs:   map[string]string{"source": source}}
	if err != nil {
		ev.Level, ev.Kind, ev.Message = slog.LevelError, string(kind.RestoreFailed), fmt.Sprintf("restore of %s failed: %v", source, err)
	}
	n.Offer(ev)
	n.Close(15 * time.Second)
}

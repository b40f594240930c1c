package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/notify"
	"github.com/btfu/btfu/notify/kind"
)

// The running engine's events reach a real webhook, and a channel whose
// endpoint never answers slows nothing: events are published at once, the
// source streams and backs up, shutdown is prompt.
func TestNotificationsFromTheRunningEngine(t *testing.T) {
	var mu sync.Mutex
	var got []notify.WebhookBody
	live := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var wb notify.WebhookBody
		if err := json.Unmarshal(b, &wb); err != nil {
			t.Errorf("webhook body %s: %v", b, err)
		}
		mu.Lock()
		got = append(got, wb)
		mu.Unlock()
	}))
	defer live.Close()
	release := make(chan struct{})
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer dead.Close()
	defer close(release)
	e, db := newEngine(t, fmt.Sprintf(`
[[notify.channel]]
name = "live"
kind = "webhook"
url = %q
events = ["*"]
[[notify.channel]]
name = "dead"
kind = "webhook"
url = %q
events = ["*"]
`, live.URL, dead.URL))
	received := func(source, kind string, n int) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range got {
			if b.Source == source && b.Kind == kind {
				n--
			}
		}
		return n <= 0
	}
	stop := run(t, e)
	waitState(t, e, "streaming")
	waitFor(t, func() bool { return received("app", "backup.finished", 1) }, "the first base backup's backup.finished at the webhook")

	ctx := context.Background()
	for i := range 300 {
		start := time.Now()
		e.Event(ctx, 0, slog.LevelError, "backup.failed", "flood", map[string]string{"source": fmt.Sprintf("flood%d", i)})
		if d := time.Since(start); d > time.Second {
			t.Fatalf("publishing event %d took %s", i, d)
		}
	}
	source.Exec(t, db, "INSERT INTO t(v) VALUES ('still captured')")
	if _, err := e.BackupNow(ctx, "app"); err != nil {
		t.Fatalf("backup while a channel is dead: %v", err)
	}
	// The live channel goes on delivering beside the dead one.
	waitFor(t, func() bool { return received("app", "backup.finished", 2) }, "the second base backup's backup.finished at the webhook")
	st := map[string]notify.ChannelStats{}
	for _, s := range e.NotificationStats() {
		st[s.Channel] = s
	}
	if st["dead"].Dropped == 0 || st["dead"].Sent != 0 || st["live"].Sent < 2 {
		t.Errorf("stats %+v", st)
	}
	start := time.Now()
	stop()
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("stopping took %s with a dead channel", d)
	}

	// Run again (a restart in the same process): notifications go on.
	run(t, e)
	waitFor(t, func() bool {
		e.Event(ctx, 0, slog.LevelError, "config.invalid", "bad key", nil)
		return received("", "config.invalid", 1)
	}, "an event of the second run at the webhook")
}

// cutter is a TCP proxy to the source that can cut every connection and
// refuse new ones, as a dropped network route would.
type cutter struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	cut    bool
	conns  []net.Conn
}

func newCutter(t *testing.T, target string) *cutter {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); c.setCut(true) })
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			c.mu.Lock()
			cut := c.cut
			c.mu.Unlock()
			if cut {
				down.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				down.Close()
				continue
			}
			c.mu.Lock()
			c.conns = append(c.conns, down, up)
			c.mu.Unlock()
			go func() { io.Copy(up, down); up.Close() }()
			go func() { io.Copy(down, up); down.Close() }()
		}
	}()
	return c
}

func (c *cutter) setCut(cut bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cut = cut
	if cut {
		for _, conn := range c.conns {
			conn.Close()
		}
		c.conns = nil
	}
}

// Capture that stalls (the source unreachable) is a lag.over_max event
// once nothing was stored for max_lag, and lag.recovered when it catches
// up: what notifications say as "capture stalled" and "recovered".
func TestLagOverMaxAndRecovered(t *testing.T) {
	defer func(d time.Duration) { watchEvery = d }(watchEvery)
	watchEvery = 200 * time.Millisecond
	db := source.CreateDB(t)
	source.Exec(t, db, "CREATE TABLE t(id serial PRIMARY KEY, v text)")
	proxy := newCutter(t, fmt.Sprintf("%s:%d", source.Host, source.Port))
	dir := t.TempDir()
	cfg, err := config.Parse("e.toml", []byte(fmt.Sprintf(`
[metadata]
path = %q
[storage]
path = %q
[engine]
spool_dir = %q
[[source]]
name = "app"
dsn = "postgres://postgres@%s/%s?sslmode=disable"
slot = "s_%s"
max_lag = "5s"
`, filepath.Join(dir, "btfu.db"), filepath.Join(dir, "data"), t.TempDir(), proxy.ln.Addr(), db, db)))
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		e.Close()
		source.Exec(t, "postgres", fmt.Sprintf("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name LIKE 's_%s%%' AND NOT active", db))
	})
	events := e.Subscribe(t.Context())
	run(t, e)
	waitState(t, e, "streaming")
	proxy.setCut(true)
	over := waitEvent(t, events, string(kind.LagOverMax))
	if over.Source != "app" || !strings.Contains(over.Message, "over max_lag 5s") {
		t.Errorf("lag event %+v", over)
	}
	proxy.setCut(false)
	source.Exec(t, db, "INSERT INTO t(v) VALUES ('after the outage')")
	if rec := waitEvent(t, events, string(kind.LagRecovered)); rec.Source != "app" {
		t.Errorf("recovery event %+v", rec)
	}
}

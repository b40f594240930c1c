package notify_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/internal/smtptest"
	"github.com/btfu/btfu/notify"
)

// hook is a real HTTP server on loopback recording what is posted to it.
type hook struct {
	*httptest.Server
	mu     sync.Mutex
	bodies [][]byte
	sigs   []string
	got    chan struct{}
	status int
}

func newHook(t *testing.T) *hook {
	h := &hook{got: make(chan struct{}, 1000), status: http.StatusOK}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies = append(h.bodies, b)
		h.sigs = append(h.sigs, r.Header.Get(notify.SignatureHeader))
		status := h.status
		h.mu.Unlock()
		w.WriteHeader(status)
		h.got <- struct{}{}
	}))
	t.Cleanup(h.Close)
	return h
}

// wait returns once n bodies arrived.
func (h *hook) wait(t *testing.T, n int) [][]byte {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		h.mu.Lock()
		if len(h.bodies) >= n {
			b := append([][]byte(nil), h.bodies...)
			h.mu.Unlock()
			return b
		}
		h.mu.Unlock()
		select {
		case <-h.got:
		case <-deadline:
			t.Fatalf("%d request(s) after 10s, want %d", len(h.bodies), n)
		}
	}
}

// settle waits until nothing more arrives for a moment and returns all.
func (h *hook) settle(t *testing.T, n *notify.Notifier) [][]byte {
	t.Helper()
	n.Close(10 * time.Second) // delivers what is queued
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]byte(nil), h.bodies...)
}

func parseConfig(t *testing.T, text string) *config.Config {
	t.Helper()
	cfg, err := config.Parse("config.toml", []byte(text+`
[[source]]
name = "orders"
dsn = "postgres://u@127.0.0.1:1/orders"
[[source]]
name = "billing"
dsn = "postgres://u@127.0.0.1:1/billing"
`))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func newNotifier(t *testing.T, cfg *config.Config, clock func() time.Time) (*notify.Notifier, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n := notify.New(func() *config.Config { return cfg }, notify.Options{Log: log, Now: clock, Backoff: 10 * time.Millisecond, Timeout: 5 * time.Second})
	t.Cleanup(func() { n.Close(time.Second) })
	return n, &logs
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestWebhookBodyIsSignedWithTheSecret(t *testing.T) {
	h := newHook(t)
	t.Setenv("BTFU_TEST_HOOK_SECRET", "s3cret-for-hmac")
	cfg := parseConfig(t, fmt.Sprintf(`
[[notify.channel]]
name = "hook"
kind = "webhook"
url = "%s/btfu/token-in-path"
secret = "${BTFU_TEST_HOOK_SECRET}"
`, h.URL))
	n, logs := newNotifier(t, cfg, nil)
	n.Offer(notify.Event{Source: "orders", Level: slog.LevelError, Kind: "capture.error", Message: "capture of orders cannot progress: store failure",
		Attrs: map[string]string{"source": "orders"}})
	body := h.wait(t, 1)[0]
	mac := hmac.New(sha256.New, []byte("s3cret-for-hmac"))
	mac.Write(body)
	if want := "sha256=" + hex.EncodeToString(mac.Sum(nil)); h.sigs[0] != want {
		t.Errorf("signature %q, want %q", h.sigs[0], want)
	}
	var wb notify.WebhookBody
	if err := json.Unmarshal(body, &wb); err != nil {
		t.Fatal(err)
	}
	if wb.Kind != "capture.error" || wb.Source != "orders" || wb.Level != "error" || wb.Title != "capture cannot progress" ||
		!strings.Contains(wb.Message, "store failure") || wb.Recovered || wb.At.IsZero() {
		t.Errorf("body %s", body)
	}
	n.Close(time.Second)
	if st := n.Stats(); len(st) != 1 || st[0].Sent != 1 || st[0].Failed != 0 {
		t.Errorf("stats %+v", st)
	}
	if strings.Contains(logs.String(), "token-in-path") || strings.Contains(logs.String(), "s3cret") {
		t.Errorf("the log names the URL's path or the secret:\n%s", logs)
	}
}

func TestSlackBodyIsAnIncomingWebhookMessage(t *testing.T) {
	h := newHook(t)
	cfg := parseConfig(t, fmt.Sprintf(`
[[notify.channel]]
name = "slack"
kind = "slack"
url = "%s/services/T0/B0/XXXX"
`, h.URL))
	n, _ := newNotifier(t, cfg, nil)
	n.Offer(notify.Event{Source: "orders", Level: slog.LevelError, Kind: "slot.dropped", Message: "slot btfu_orders dropped"})
	body := h.wait(t, 1)[0]
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatal(err)
	}
	text, _ := m["text"].(string)
	if len(m) != 1 || !strings.Contains(text, ":red_circle: *orders: slot dropped: a gap in the backups*") || !strings.Contains(text, "slot btfu_orders dropped") {
		t.Errorf("Slack body %s", body)
	}
	if h.sigs[0] != "" {
		t.Errorf("a Slack message is signed: %q", h.sigs[0])
	}
}

func TestEmailOverSTARTTLSAndTLSWithAuth(t *testing.T) {
	for _, c := range []struct {
		name string
		mode smtptest.Mode
		tls  string
	}{{"starttls", smtptest.StartTLS, "starttls"}, {"tls", smtptest.Implicit, "tls"}} {
		t.Run(c.name, func(t *testing.T) {
			srv := smtptest.Start(t, c.mode, "btfu-mailer", "mail-pass-123")
			pwFile := t.TempDir() + "/pw"
			writeFile(t, pwFile, "mail-pass-123\n")
			cfg := parseConfig(t, fmt.Sprintf(`
[[notify.channel]]
name = "mail"
kind = "email"
smtp = "%s"
tls = "%s"
ca_file = "%s"
username = "btfu-mailer"
password_file = "%s"
from = "btfu@example.com"
to = ["ops@example.com", "dba@example.com"]
`, srv.Addr, c.tls, srv.CAFile, pwFile))
			n, _ := newNotifier(t, cfg, nil)
			n.Offer(notify.Event{Source: "billing", Level: slog.LevelError, Kind: "backup.failed", Message: "base backup of billing failed: pg_dump: error: connection lost"})
			m := srv.Wait(t, 1, 10*time.Second)[0]
			if m.From != "btfu@example.com" || strings.Join(m.To, ",") != "ops@example.com,dba@example.com" || m.User != "btfu-mailer" || !m.TLS {
				t.Errorf("message %+v", m)
			}
			for _, want := range []string{"Subject: [btfu] billing: base backup failed\r\n", "From: btfu@example.com\r\n",
				"To: ops@example.com, dba@example.com\r\n", "X-Btfu-Kind: backup.failed\r\n", "pg_dump: error: connection lost"} {
				if !strings.Contains(m.Data, want) {
					t.Errorf("message lacks %q:\n%s", want, m.Data)
				}
			}
		})
	}
}

func TestEmailRefusesPlainTextAndWrongPasswords(t *testing.T) {
	plain := smtptest.Start(t, smtptest.Plain, "", "")
	auth := smtptest.Start(t, smtptest.StartTLS, "btfu-mailer", "right-password")
	cfg := parseConfig(t, fmt.Sprintf(`
[[notify.channel]]
name = "plain"
kind = "email"
smtp = "%s"
from = "btfu@example.com"
to = ["ops@example.com"]
[[notify.channel]]
name = "wrongpw"
kind = "email"
smtp = "%s"
ca_file = "%s"
username = "btfu-mailer"
password = "wrong-password"
from = "btfu@example.com"
to = ["ops@example.com"]
[[notify.channel]]
name = "untrusted"
kind = "email"
smtp = "%s"
from = "btfu@example.com"
to = ["ops@example.com"]
`, plain.Addr, auth.Addr, auth.CAFile, auth.Addr))
	res, err := notify.SendTest(context.Background(), cfg, "")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"plain": "never sends mail in plain text", "wrongpw": "535", "untrusted": "certificate"}
	hints := map[string]string{"plain": "tls", "wrongpw": "username and password", "untrusted": "ca_file"}
	for _, r := range res {
		name, _, _ := strings.Cut(r.Channel, " ")
		if r.Err == nil || !strings.Contains(r.Err.Error(), want[name]) || !strings.Contains(r.Hint, hints[name]) {
			t.Errorf("%s: err %v, hint %q", r.Channel, r.Err, r.Hint)
		}
		if strings.Contains(fmt.Sprint(r.Err), "wrong-password") {
			t.Errorf("the error shows the password: %v", r.Err)
		}
	}
	if len(plain.Messages())+len(auth.Messages()) != 0 || auth.AuthFailures() != 1 {
		t.Errorf("%d + %d messages accepted, %d auth failures", len(plain.Messages()), len(auth.Messages()), auth.AuthFailures())
	}
}

// One outage is one message, repeats within the quiet period are counted
// in the next one, and the event that clears it sends one "recovered".
func TestQuietPeriodAndRecovered(t *testing.T) {
	h := newHook(t)
	cfg := parseConfig(t, fmt.Sprintf(`
[notify]
quiet_period = "1h"
quiet_periods = { "lag.over_max" = "10m" }
[[notify.channel]]
name = "hook"
kind = "webhook"
url = "%s"
`, h.URL))
	var mu sync.Mutex
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	step := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	n, _ := newNotifier(t, cfg, clock)
	ev := func(source, k string) {
		n.Offer(notify.Event{Source: source, Level: slog.LevelError, Kind: k, Message: k + " of " + source})
	}
	ev("orders", "capture.error") // sent
	step(time.Minute)
	ev("orders", "capture.error")  // quiet
	ev("billing", "capture.error") // another source: sent
	step(time.Minute)
	ev("orders", "capture.error")     // quiet
	ev("orders", "config.reloaded")   // clears nothing open: not sent
	ev("orders", "capture.recovered") // recovered, 2 suppressed
	ev("orders", "capture.recovered") // nothing open: not sent
	ev("orders", "capture.error")     // a new outage within the quiet period: not sent...
	step(30 * time.Minute)
	ev("orders", "capture.recovered") // ...nor its recovery (never told)
	ev("orders", "lag.over_max")      // sent
	step(11 * time.Minute)
	ev("orders", "lag.over_max") // still over after its 10m quiet period: a reminder
	ev("orders", "backup.finished")
	ev("orders", "backup.failed")   // sent
	ev("orders", "backup.finished") // recovered (not backup.finished itself)
	ev("orders", "engine.started")  // not a notified kind
	bodies := h.settle(t, n)

	var got []string
	for _, b := range bodies {
		var wb notify.WebhookBody
		if err := json.Unmarshal(b, &wb); err != nil {
			t.Fatal(err)
		}
		s := wb.Source + " " + wb.Kind
		if wb.Recovered {
			s += " recovered"
		}
		if wb.Suppressed > 0 {
			s += fmt.Sprintf(" +%d", wb.Suppressed)
		}
		if wb.Since != nil {
			s += " since " + wb.Since.Format("15:04")
		}
		got = append(got, s)
	}
	want := []string{
		"orders capture.error",
		"billing capture.error",
		"orders capture.error recovered +2 since 12:00",
		"orders lag.over_max",
		"orders lag.over_max since 12:32",
		"orders backup.failed",
		"orders backup.failed recovered since 12:43",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("messages:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A channel's events and sources lists choose what it gets; engine-wide
// events go to every channel.
func TestChannelFilters(t *testing.T) {
	all, orders := newHook(t), newHook(t)
	cfg := parseConfig(t, fmt.Sprintf(`
[[notify.channel]]
name = "all"
kind = "webhook"
url = "%s"
events = ["*"]
[[notify.channel]]
name = "orders-backups"
kind = "webhook"
url = "%s"
events = ["backup.*", "config.invalid"]
sources = ["orders"]
`, all.URL, orders.URL))
	n, _ := newNotifier(t, cfg, nil)
	for _, e := range []notify.Event{
		{Source: "orders", Kind: "backup.finished"},
		{Source: "billing", Kind: "backup.failed"},
		{Source: "orders", Kind: "capture.error"},
		{Kind: "config.invalid"},
	} {
		n.Offer(e)
	}
	n.Close(10 * time.Second)
	kinds := func(h *hook) string {
		var out []string
		for _, b := range h.bodies {
			var wb notify.WebhookBody
			_ = json.Unmarshal(b, &wb)
			out = append(out, wb.Source+":"+wb.Kind)
		}
		return strings.Join(out, " ")
	}
	if got := kinds(all); got != "orders:backup.finished billing:backup.failed orders:capture.error :config.invalid" {
		t.Errorf("channel all got %s", got)
	}
	if got := kinds(orders); got != "orders:backup.finished :config.invalid" {
		t.Errorf("channel orders-backups got %s", got)
	}
}

// A dead endpoint (it never answers) makes Offer neither block nor slow
// down: the channel's queue fills, the rest is dropped and counted, and
// Close gives up after its grace.
func TestDeadEndpointDoesNotBlock(t *testing.T) {
	release := make(chan struct{})
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer dead.Close()
	defer close(release)
	live := newHook(t)
	cfg := parseConfig(t, fmt.Sprintf(`
[[notify.channel]]
name = "dead"
kind = "webhook"
url = "%s"
[[notify.channel]]
name = "live"
kind = "webhook"
url = "%s"
`, dead.URL, live.URL))
	n, logs := newNotifier(t, cfg, nil)
	start := time.Now()
	for i := range 500 {
		n.Offer(notify.Event{Source: fmt.Sprintf("s%d", i), Level: slog.LevelError, Kind: "backup.failed", Message: "failed"})
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("500 events took %s to offer", d)
	}
	live.wait(t, 100) // the other channel delivers meanwhile
	start = time.Now()
	n.Close(500 * time.Millisecond)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Close took %s", d)
	}
	st := map[string]notify.ChannelStats{}
	for _, s := range n.Stats() {
		st[s.Channel] = s
	}
	if d := st["dead"]; d.Dropped < 300 || d.Sent != 0 || d.Dropped+d.Failed > 500 {
		t.Errorf("dead channel %+v", d)
	}
	if !strings.Contains(logs.String(), "notification dropped") {
		t.Errorf("drops are not logged")
	}
}

// A failing endpoint is retried with backoff; a refusal (4xx) is not.
func TestRetriesWithBackoff(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		at = append(at, time.Now())
		switch {
		case r.Header.Get("User-Agent") != "btfu":
			w.WriteHeader(http.StatusBadRequest)
		case len(at) <= 3: // the first message: three failures, then ok
			w.WriteHeader(http.StatusServiceUnavailable)
		case len(at) == 4:
			w.WriteHeader(http.StatusOK)
		default: // the second: refused
			w.WriteHeader(http.StatusForbidden)
		}
	}))
	defer srv.Close()
	cfg := parseConfig(t, fmt.Sprintf(`
[[notify.channel]]
name = "flaky"
kind = "webhook"
url = "%s"
`, srv.URL))
	n, _ := newNotifier(t, cfg, nil)
	n.Offer(notify.Event{Source: "orders", Kind: "backup.failed"})
	n.Offer(notify.Event{Source: "billing", Kind: "backup.failed"})
	n.Close(10 * time.Second)
	st := n.Stats()[0]
	mu.Lock()
	defer mu.Unlock()
	if len(at) != 5 || st.Sent != 1 || st.Failed != 1 {
		t.Fatalf("%d requests, stats %+v", len(at), st)
	}
	// Backoff 10ms, doubling.
	for i, min := range []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond} {
		if d := at[i+1].Sub(at[i]); d < min {
			t.Errorf("retry %d came %s after the attempt before, want at least %s", i+1, d, min)
		}
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

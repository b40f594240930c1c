package cli_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/btfu/btfu/internal/smtptest"
)

func TestNotifyTestReportsEveryChannel(t *testing.T) {
	var mu sync.Mutex
	var hookBodies, slackBodies []string
	var sigOK bool
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte("hook-secret-4242"))
		mac.Write(b)
		mu.Lock()
		defer mu.Unlock()
		hookBodies = append(hookBodies, string(b))
		sigOK = r.Header.Get("X-Btfu-Signature-256") == "sha256="+hex.EncodeToString(mac.Sum(nil))
	}))
	defer hook.Close()
	slack := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		slackBodies = append(slackBodies, string(b))
	}))
	defer slack.Close()
	mail := smtptest.Start(t, smtptest.StartTLS, "btfu", "smtp-pass-4242")
	// A port nothing listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := ln.Addr().String()
	ln.Close()

	dir := writeConfig(t, fmt.Sprintf(`
[[notify.channel]]
name = "hook"
kind = "webhook"
url = "%s/hooks/path-token-4242"
secret = "hook-secret-4242"
[[notify.channel]]
name = "slack"
kind = "slack"
url = "%s/services/T0/B0/slack-token-4242"
[[notify.channel]]
name = "mail"
kind = "email"
smtp = "%s"
ca_file = "%s"
username = "btfu"
password = "smtp-pass-4242"
from = "btfu@example.com"
to = ["ops@example.com"]
[[notify.channel]]
name = "down"
kind = "webhook"
url = "http://%s/dead-token-4242"

[[source]]
name = "orders"
dsn = "postgres://btfu@127.0.0.1:1/orders"
`, hook.URL, slack.URL, mail.Addr, mail.CAFile, deadAddr))

	r := btfu(t, dir, "notify", "test")
	if r.code != 1 || !strings.Contains(r.stderr, "1 of 4 channel(s) failed") {
		t.Fatalf("exit %d:\n%s", r.code, r.all())
	}
	for _, want := range []string{
		"hook (webhook, " + hook.URL + "): ok",
		"slack (slack, " + slack.URL + "): ok",
		"mail (email, " + mail.Addr + ", starttls): ok",
		"down (webhook, http://" + deadAddr + "): error: POST http://" + deadAddr + ": ",
		"hint: nothing listens there: check the host and port",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.all(), "4242") {
		t.Errorf("the output shows a secret or a URL's token:\n%s", r.all())
	}
	mu.Lock()
	if len(hookBodies) != 1 || !sigOK || !strings.Contains(hookBodies[0], `"kind":"notify.test"`) {
		t.Errorf("webhook got %q (signature ok %v)", hookBodies, sigOK)
	}
	var sb map[string]string
	if len(slackBodies) != 1 || json.Unmarshal([]byte(slackBodies[0]), &sb) != nil || !strings.Contains(sb["text"], "test message") {
		t.Errorf("Slack got %q", slackBodies)
	}
	mu.Unlock()
	if m := mail.Wait(t, 1, 10*time.Second); !strings.Contains(m[0].Data, "Subject: [btfu] test message") || m[0].User != "btfu" {
		t.Errorf("mail %+v", m[0])
	}

	// One channel.
	r = btfu(t, dir, "notify", "test", "--channel", "slack")
	if r.code != 0 || strings.Count(r.stdout, ": ok") != 1 || !strings.Contains(r.stdout, "slack (slack") {
		t.Errorf("--channel slack: exit %d:\n%s", r.code, r.all())
	}
	if r := btfu(t, dir, "notify", "test", "--channel", "pager"); r.code != 1 || !strings.Contains(r.stderr, `no channel "pager"`) || !strings.Contains(r.stderr, "hook, slack, mail, down") {
		t.Errorf("unknown channel: exit %d:\n%s", r.code, r.all())
	}
	if r := btfu(t, dir, "notify"); r.code != 2 {
		t.Errorf("notify without test: exit %d:\n%s", r.code, r.all())
	}
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, text string) (*Config, error) {
	t.Helper()
	return Parse("config.toml", []byte(text))
}

func TestSmallestConfigGetsEveryDefault(t *testing.T) {
	c, err := parse(t, `
[[source]]
name = "orders"
dsn = "postgres://app@db.example.com:5432/shop"
`)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Sources[0]
	checks := []struct{ got, want any }{
		{c.Metadata.Driver, "sqlite"}, {c.Metadata.Path, "btfu.db"},
		{c.Storage.Kind, "local"}, {c.Storage.Path, "data"},
		{c.Log.Level, "info"}, {c.Log.Format, "json"},
		{s.Slot, "btfu_orders"}, {s.Publication, "btfu_orders"},
		{s.Schedule, "0 3 * * *"}, {s.Timezone, "UTC"},
		{s.SegmentMaxSize, ByteSize(64 << 20)}, {s.SegmentMaxAge.D(), 500 * time.Millisecond},
		{s.KeepBaseBackups, 2}, {s.KeepFor.D(), 7 * 24 * time.Hour},
	}
	for i, c := range checks {
		if c.got != c.want {
			t.Errorf("check %d: got %v, want %v", i, c.got, c.want)
		}
	}
}

func TestDashesInNamesBecomeUnderscoresInSlotNames(t *testing.T) {
	c, err := parse(t, "[[source]]\nname = \"web-shop\"\ndsn = \"postgres://u@h/d\"\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Sources[0].Slot != "btfu_web_shop" {
		t.Fatalf("slot = %q", c.Sources[0].Slot)
	}
}

func TestProblemsNameTheKey(t *testing.T) {
	cases := []struct {
		name, text, want string
	}{
		{"cron", `schedule = "every 5m"`, `source.orders.schedule: 'every 5m' is not a cron expression; try '*/5 * * * *'`},
		{"cron hours", `schedule = "every 2 hours"`, `try '0 */2 * * *'`},
		{"timezone", `timezone = "Europe/Pariss"`, `source.orders.timezone: "Europe/Pariss" is not a time zone`},
		{"unknown key", `shedule = "@daily"`, `source.shedule: unknown key; did you mean "source.schedule"?`},
		{"size", `segment_max_size = "64 parsecs"`, `is not a size`},
		{"size range", `segment_max_size = "1KiB"`, `source.orders.segment_max_size: 1KiB is outside`},
		{"duration", `segment_max_age = "soon"`, `is not a duration`},
		{"slot", `slot = "Bad-Slot"`, `source.orders.slot: "Bad-Slot" is not a valid replication slot name`},
		{"pattern", `exclude_tables = ["orders"]`, `source.orders.exclude_tables[0]: "orders" is not a schema.table pattern`},
		{"keep", `keep_base_backups = -1`, `source.orders.keep_base_backups: must be at least 1`},
		{"wrong type", `keep_base_backups = "two"`, `keep_base_backups`},
		{"calendar", `keep_weekly = -4`, `source.orders.keep_weekly: must not be negative`},
		{"restore target", `restore_target = "postgres://u@h:notaport/d"`, `source.orders.restore_target: cannot parse`},
		{"compact after", `compact_after = "hourly"`, `source.orders.compact_after: "hourly" is not a duration`},
		{"compact after short", `compact_after = "10s"`, `source.orders.compact_after: 10s is too short; at least 1m`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := parse(t, "[[source]]\nname = \"orders\"\ndsn = \"postgres://u@h/d\"\n"+c.text+"\n")
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v\nwant it to contain %s", err, c.want)
			}
		})
	}
}

func TestTopLevelProblems(t *testing.T) {
	cases := []struct{ text, want string }{
		{"[metadata]\ndriver = \"mysql\"", `metadata.driver: "mysql" is not a metadata driver`},
		{"[metadata]\ndriver = \"postgres\"", `metadata.dsn: driver = "postgres" needs dsn or dsn_file`},
		{"[storage]\nkind = \"s3\"", `storage.s3.bucket: storage kind "s3" needs a bucket name`},
		{"[storage]\nkind = \"s3\"\n[storage.s3]\nbucket = \"b\"\nendpoint = \"minio:9000\"", `storage.s3.endpoint: "minio:9000" is not a URL`},
		{"[storage]\nkind = \"s3\"\n[storage.s3]\nbucket = \"b\"\naccess_key_id = \"AK\"", `set both access_key_id and secret_access_key`},
		{"[log]\nlevel = \"loud\"", `log.level: "loud" is not a level`},
		{"[storage]\nkin = \"s3\"", `storage.kin: unknown key; did you mean "storage.kind"?`},
		{"[[source]]\nname = \"a\"\ndsn = \"postgres://u@h/d\"\n[[source]]\nname = \"a\"\ndsn = \"postgres://u@h/e\"", `source.a.name: "a" is used by two [[source]] tables`},
		{"[[source]]\nname = \"Orders!\"\ndsn = \"postgres://u@h/d\"", `source.Orders!.name: "Orders!" is not a valid name`},
		{"[[source]]\ndsn = \"postgres://u@h/d\"", `source[0].name: every [[source]] needs a name`},
		{"[[source]]\nname = \"x\"", `source.x.dsn: missing`},
		{"[[source]]\nname = \"x\"\ndsn = \"postgres://u@h/d\"\nkeep_days = 3\n[source.backup]\ncron = \"x\"", `unknown key`},
		{"this is not toml", `config.toml: line 1`},
	}
	for _, c := range cases {
		_, err := parse(t, c.text)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant it to contain %s", c.text, err, c.want)
		}
	}
}

func TestEveryProblemIsReportedAtOnce(t *testing.T) {
	_, err := parse(t, "[log]\nlevel = \"x\"\nformat = \"y\"\n")
	p, ok := err.(*Problems)
	if !ok || len(p.Items) != 2 {
		t.Fatalf("want 2 problems, got %v", err)
	}
}

func TestEnvExpansionAndSecretFiles(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "pw")
	os.WriteFile(pwFile, []byte("file-pass-123\n"), 0o600)
	dsnFile := filepath.Join(dir, "dsn")
	os.WriteFile(dsnFile, []byte("postgres://reader:dsn-file-pass@db2/inventory\n"), 0o600)
	t.Setenv("BTFU_TEST_DB_PASS", "env-pass-456")
	c, err := parse(t, `
[[source]]
name = "a"
dsn = "postgres://app:${BTFU_TEST_DB_PASS}@db/shop"
restore_target = "postgres://drill:drill-pass-789@scratch/shop_drill"
[[source]]
name = "b"
dsn = "postgres://app@db/shop"
password_file = "`+pwFile+`"
[[source]]
name = "c"
dsn_file = "`+dsnFile+`"
`)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.Source("a")
	if cfg, err := a.ConnConfig(); err != nil || cfg.Password != "env-pass-456" {
		t.Fatalf("a: %v %v", cfg, err)
	}
	b, _ := c.Source("b")
	if cfg, err := b.ConnConfig(); err != nil || cfg.Password != "file-pass-123" {
		t.Fatalf("b: password %q, %v", cfg.Password, err)
	}
	cs, _ := c.Source("c")
	if cs.Describe() != "db2:5432/inventory" {
		t.Fatalf("c: %s", cs.Describe())
	}
	shown, err := c.Show()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"env-pass-456", "file-pass-123", "dsn-file-pass", "drill-pass-789"} {
		if strings.Contains(shown, secret) {
			t.Errorf("config show leaks %s:\n%s", secret, shown)
		}
	}
	if !strings.Contains(shown, `schedule = "0 3 * * *"`) || !strings.Contains(shown, `segment_max_size = "64MiB"`) {
		t.Errorf("config show lacks defaults:\n%s", shown)
	}
	// What Show prints loads again to the same thing.
	again, err := parse(t, strings.ReplaceAll(shown, "xxxxx", "x"))
	if err != nil {
		t.Fatalf("show output does not parse: %v\n%s", err, shown)
	}
	if len(again.Sources) != 3 || again.Sources[1].Slot != "btfu_b" {
		t.Fatalf("round trip: %+v", again.Sources)
	}
}

func TestUnsetEnvVarIsNamed(t *testing.T) {
	_, err := parse(t, "[[source]]\nname = \"a\"\ndsn = \"postgres://u:${BTFU_SURELY_UNSET_VAR}@h/d\"\n")
	if err == nil || !strings.Contains(err.Error(), "source.a.dsn: environment variable BTFU_SURELY_UNSET_VAR is not set") {
		t.Fatalf("got %v", err)
	}
}

func TestBadDSNNeverShowsPassword(t *testing.T) {
	_, err := parse(t, "[[source]]\nname = \"a\"\ndsn = \"postgres://u:pw-in-bad-dsn@h:notaport/d\"\n")
	if err == nil || !strings.Contains(err.Error(), "source.a.dsn: cannot parse") {
		t.Fatalf("got %v", err)
	}
	if strings.Contains(err.Error(), "pw-in-bad-dsn") {
		t.Fatalf("password in error: %v", err)
	}
}

func TestMissingFileSaysHowToFix(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "config.toml"))
	if err == nil || !strings.Contains(err.Error(), "copy config.toml.example") {
		t.Fatalf("got %v", err)
	}
}

func TestResolvePath(t *testing.T) {
	t.Setenv(EnvConfig, "")
	if ResolvePath("") != "config.toml" {
		t.Error("default")
	}
	t.Setenv(EnvConfig, "/etc/btfu.toml")
	if ResolvePath("") != "/etc/btfu.toml" || ResolvePath("x.toml") != "x.toml" {
		t.Error("env/flag precedence")
	}
}

func TestByteSizeAndDuration(t *testing.T) {
	for in, want := range map[string]ByteSize{"64MiB": 64 << 20, "1GB": 1e9, "512": 512, "1.5KiB": 1536} {
		if got, err := ParseByteSize(in); err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %v, %v", in, got, err)
		}
	}
	for in, want := range map[string]time.Duration{"1s": time.Second, "7d": 7 * 24 * time.Hour, "250ms": 250 * time.Millisecond} {
		if got, err := ParseDuration(in); err != nil || got.D() != want {
			t.Errorf("ParseDuration(%q) = %v, %v", in, got, err)
		}
	}
}

// config.toml.example must load, and uncommenting every key must too: it
// documents every option with its default.
func TestExampleDocumentsEveryKey(t *testing.T) {
	b, err := os.ReadFile("../config.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("config.toml.example", b); err != nil {
		t.Fatalf("example does not load: %v", err)
	}
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		// Keys, and the headers of commented-out tables such as the
		// [[notify.channel]] examples.
		if strings.HasPrefix(l, "# ") && (strings.Contains(l, " = ") || strings.HasPrefix(l, "# [[")) {
			l = strings.TrimPrefix(l, "# ")
		}
		lines = append(lines, l)
	}
	text := strings.Join(lines, "\n")
	if _, err := Parse("uncommented", []byte(text)); err != nil {
		t.Fatalf("the documented defaults, uncommented, do not load: %v", err)
	}
	for _, k := range knownKeys() {
		short := k[strings.LastIndex(k, ".")+1:]
		if !strings.Contains(text, "\n"+short+" = ") {
			t.Errorf("config.toml.example does not document %s", k)
		}
	}
}

func TestNotifyChannels(t *testing.T) {
	dir := t.TempDir()
	urlFile := filepath.Join(dir, "slack-url")
	os.WriteFile(urlFile, []byte("https://hooks.slack.com/services/T1/B2/secret-token-xyz\n"), 0o600)
	t.Setenv("BTFU_TEST_HOOK_SECRET", "hmac-secret-789")
	t.Setenv("BTFU_TEST_SMTP_PASSWORD", "smtp-pass-456")
	c, err := parse(t, `
[notify]
quiet_periods = { "lag.over_max" = "15m" }
[[notify.channel]]
name = "hook"
kind = "webhook"
url = "https://alerts.example.com/btfu"
secret = "${BTFU_TEST_HOOK_SECRET}"
events = ["capture.*", "backup.finished"]
sources = ["orders"]
[[notify.channel]]
name = "slack"
kind = "slack"
url_file = "`+urlFile+`"
[[notify.channel]]
name = "mail"
kind = "email"
smtp = "smtp.example.com:465"
tls = "tls"
username = "btfu"
password = "${BTFU_TEST_SMTP_PASSWORD}"
from = "btfu@example.com"
to = ["ops@example.com"]
[[source]]
name = "orders"
dsn = "postgres://u@h/d"
`)
	if err != nil {
		t.Fatal(err)
	}
	n := c.Notify
	if n.QuietPeriod.D() != time.Hour || n.QuietPeriods["lag.over_max"].D() != 15*time.Minute || len(n.Channels) != 3 {
		t.Fatalf("notify %+v", n)
	}
	if n.Channels[0].Secret != "hmac-secret-789" || n.Channels[1].URL != "https://hooks.slack.com/services/T1/B2/secret-token-xyz" || n.Channels[2].Password != "smtp-pass-456" {
		t.Errorf("secrets not resolved: %+v", n.Channels)
	}
	shown, err := c.Show()
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hmac-secret-789", "secret-token-xyz", "smtp-pass-456", "alerts.example.com/btfu"} {
		if strings.Contains(shown, secret) {
			t.Errorf("config show prints %q:\n%s", secret, shown)
		}
	}
	if !strings.Contains(shown, "slack-url") {
		t.Errorf("config show hides where the Slack URL comes from")
	}

	for _, c := range []struct{ text, want string }{
		{"[[notify.channel]]\nname = \"x\"\nkind = \"pager\"", `notify.channel.x.kind: "pager" is not a channel kind`},
		{"[[notify.channel]]\nname = \"x\"\nkind = \"slack\"", `notify.channel.x.url: kind "slack" needs the URL`},
		{"[[notify.channel]]\nname = \"x\"\nkind = \"webhook\"\nurl = \"https://h/\"\nevents = [\"captur.error\"]", `notify.channel.x.events[0]: "captur.error" is not an event kind`},
		{"[[notify.channel]]\nname = \"x\"\nkind = \"webhook\"\nurl = \"https://h/\"\nsources = [\"nope\"]", `notify.channel.x.sources[0]: no [[source]] is named "nope"`},
		{"[[notify.channel]]\nname = \"x\"\nkind = \"email\"\nsmtp = \"smtp.example.com:25\"\ntls = \"none\"\nfrom = \"a@b\"\nto = [\"c@d\"]", `notify.channel.x.tls: "none" is not a TLS mode`},
		{"[[notify.channel]]\nname = \"x\"\nkind = \"email\"\nsmtp = \"smtp.example.com\"\nfrom = \"a@b\"\nto = [\"c@d\"]", `notify.channel.x.smtp: "smtp.example.com" is not host:port`},
		{"[[notify.channel]]\nname = \"x\"\nkind = \"email\"\nsmtp = \"h:587\"\nusername = \"u\"\nfrom = \"a@b\"\nto = [\"c@d\"]", `set both username and password`},
		{"[[notify.channel]]\nname = \"x\"\nkind = \"webhook\"\nurl = \"https://h/\"\nsecret = \"${BTFU_UNSET_SECRET_X}\"", `notify.channel.x.secret: environment variable BTFU_UNSET_SECRET_X is not set`},
		{"[notify]\nquiet_periods = { \"lag.overmax\" = \"1m\" }", `notify.quiet_periods.lag.overmax: "lag.overmax" is not an event kind`},
	} {
		_, err := parse(t, c.text+"\n[[source]]\nname = \"orders\"\ndsn = \"postgres://u@h/d\"\n")
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q:\n got %v\nwant it to contain %s", c.text, err, c.want)
		}
	}
}

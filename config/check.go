package config

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // time zones work on machines without /usr/share/zoneinfo

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/robfig/cron/v3"

	"github.com/btfu/btfu/notify/kind"
	"github.com/btfu/btfu/redact"
	"github.com/btfu/btfu/store/artifact/agecrypt"
)

var envRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// expandAll replaces ${VAR} in every string value, reporting unset
// variables by key.
func expandAll(c *Config, p *Problems) {
	expand := func(key string, s *string) {
		*s = envRE.ReplaceAllStringFunc(*s, func(m string) string {
			name := envRE.FindStringSubmatch(m)[1]
			v, ok := os.LookupEnv(name)
			if !ok {
				p.add(key, "environment variable %s is not set (referenced as ${%s})", name, name)
			}
			return v
		})
	}
	walkStrings(reflect.ValueOf(&c.Metadata).Elem(), "metadata", expand)
	walkStrings(reflect.ValueOf(&c.Storage).Elem(), "storage", expand)
	walkStrings(reflect.ValueOf(&c.Log).Elem(), "log", expand)
	walkStrings(reflect.ValueOf(&c.API).Elem(), "api", expand)
	for i := range c.Notify.Channels {
		walkStrings(reflect.ValueOf(&c.Notify.Channels[i]).Elem(), channelKey(&c.Notify.Channels[i], i), expand)
	}
	for i := range c.Sources {
		walkStrings(reflect.ValueOf(&c.Sources[i]).Elem(), sourceKey(&c.Sources[i], i), expand)
	}
}

func sourceKey(s *Source, i int) string {
	if s.Name != "" {
		return "source." + s.Name
	}
	return fmt.Sprintf("source[%d]", i)
}

func channelKey(ch *Channel, i int) string {
	if ch.Name != "" {
		return "notify.channel." + ch.Name
	}
	return fmt.Sprintf("notify.channel[%d]", i)
}

func walkStrings(v reflect.Value, prefix string, fn func(key string, s *string)) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
		if tag == "" || tag == "-" {
			continue
		}
		key := prefix + "." + tag
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			fn(key, f.Addr().Interface().(*string))
		case reflect.Slice:
			if f.Type().Elem().Kind() == reflect.String {
				for j := 0; j < f.Len(); j++ {
					fn(fmt.Sprintf("%s[%d]", key, j), f.Index(j).Addr().Interface().(*string))
				}
			}
		case reflect.Struct:
			walkStrings(f, key, fn)
		}
	}
}

// knownKeys lists every dotted key, with "source" standing for any
// [[source]] table.
func knownKeys() []string {
	var keys []string
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := 0; i < t.NumField(); i++ {
			tag, _, _ := strings.Cut(t.Field(i).Tag.Get("toml"), ",")
			if tag == "" || tag == "-" {
				continue
			}
			ft := t.Field(i).Type
			key := strings.TrimPrefix(prefix+"."+tag, ".")
			switch {
			case ft.Kind() == reflect.Struct && ft.PkgPath() != "" && ft.NumField() > 0 && ft.Name() != "Duration":
				walk(ft, key)
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				walk(ft.Elem(), key)
			default:
				keys = append(keys, key)
			}
		}
	}
	walk(reflect.TypeOf(Config{}), "")
	return keys
}

// suggestKey returns the known key closest to an unknown one, if close.
func suggestKey(unknown string) string {
	best, bestD := "", 4
	for _, k := range knownKeys() {
		if d := editDistance(unknown, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

var (
	sourceNameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,39}$`)
	slotNameRE   = regexp.MustCompile(`^[a-z0-9_]{1,63}$`)
	pubNameRE    = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)
	everyRE      = regexp.MustCompile(`(?i)^\s*every\s+(\d+)\s*(m|min|minutes?|h|hours?)\s*$`)
)

func (c *Config) check(p *Problems) {
	switch c.Metadata.Driver {
	case "sqlite":
		if c.Metadata.DSN != "" || c.Metadata.DSNFile != "" {
			p.add("metadata.dsn", "is for driver = \"postgres\"; the sqlite driver uses metadata.path")
		}
	case "postgres":
		readSecretFile(p, "metadata.dsn_file", c.Metadata.DSNFile, &c.Metadata.DSN, "metadata.dsn")
		if c.Metadata.DSN == "" {
			p.add("metadata.dsn", "driver = \"postgres\" needs dsn or dsn_file (a connection string for the metadata database)")
		} else {
			checkDSN(p, "metadata.dsn", c.Metadata.DSN, "")
		}
		if !pubNameRE.MatchString(c.Metadata.Schema) {
			p.add("metadata.schema", "%q is not a plain schema name; use lower-case letters, digits and _", c.Metadata.Schema)
		}
	default:
		p.add("metadata.driver", "%q is not a metadata driver; use \"sqlite\" or \"postgres\"", c.Metadata.Driver)
	}

	readSecretFile(p, "api.token_file", c.API.TokenFile, &c.API.Token, "api.token")
	redact.Register(c.API.Token)
	if c.API.Listen != "" {
		host, _, err := net.SplitHostPort(c.API.Listen)
		switch {
		case err != nil:
			p.add("api.listen", "%q is not host:port; write it like \"127.0.0.1:9187\"", c.API.Listen)
		case !isLoopback(host) && c.API.Token == "":
			p.add("api.token", "api.listen = %q accepts connections from other machines; set token (or token_file) so they must authenticate, or listen on 127.0.0.1", c.API.Listen)
		}
	}
	if c.API.Token != "" && len(c.API.Token) < 16 {
		key := "api.token"
		if c.API.TokenFile != "" {
			key = "api.token_file"
		}
		p.add(key, "the token is too short to be guess-proof; use at least 16 characters, e.g. from 'openssl rand -hex 16'")
	}

	switch c.Storage.Kind {
	case "local":
	case "s3":
		s := &c.Storage.S3
		if s.Bucket == "" {
			p.add("storage.s3.bucket", "storage kind \"s3\" needs a bucket name")
		}
		if s.Endpoint != "" {
			if u, err := url.Parse(s.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				p.add("storage.s3.endpoint", "%q is not a URL; write it like \"https://s3.example.com\" or \"http://127.0.0.1:9000\"", s.Endpoint)
			}
		}
		readSecretFile(p, "storage.s3.secret_access_key_file", s.SecretAccessKeyFile, &s.SecretAccessKey, "storage.s3.secret_access_key")
		if (s.AccessKeyID == "") != (s.SecretAccessKey == "") {
			p.add("storage.s3.access_key_id", "set both access_key_id and secret_access_key (or secret_access_key_file), or neither to use the standard AWS credential chain")
		}
		redact.Register(s.SecretAccessKey)
		redact.Register(s.SessionToken)
		if s.PartSize < 5<<20 || s.PartSize > 5<<30 {
			p.add("storage.s3.part_size", "%s is outside S3's part size limits (5MiB to 5GiB)", s.PartSize)
		}
		if strings.HasPrefix(s.Prefix, "/") {
			p.add("storage.s3.prefix", "%q must not start with '/'", s.Prefix)
		}
	default:
		p.add("storage.kind", "%q is not a storage kind; use \"local\" or \"s3\"", c.Storage.Kind)
	}

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "%q is not a level; use debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "json", "text":
	default:
		p.add("log.format", "%q is not a format; use \"json\" or \"text\"", c.Log.Format)
	}

	names := map[string]bool{}
	slots := map[string]string{}
	for i := range c.Sources {
		c.checkSource(p, i, names, slots)
	}
	c.checkNotify(p, names)
	c.checkEncryption(p)
}

// checkNotify checks [notify] and every [[notify.channel]]; sources are
// the configured source names.
func (c *Config) checkNotify(p *Problems, sources map[string]bool) {
	n := &c.Notify
	if n.QuietPeriod < 0 {
		p.add("notify.quiet_period", "must not be negative")
	}
	for k, d := range n.QuietPeriods {
		if !kind.ValidPattern(k) || strings.Contains(k, "*") {
			p.add("notify.quiet_periods."+k, "%q is not an event kind; use one of %s", k, kindList())
		}
		if d < 0 {
			p.add("notify.quiet_periods."+k, "must not be negative")
		}
	}
	names := map[string]bool{}
	for i := range n.Channels {
		ch := &n.Channels[i]
		key := channelKey(ch, i)
		switch {
		case ch.Name == "":
			p.add(key+".name", "every [[notify.channel]] needs a name, e.g. name = \"ops-slack\"")
		case !sourceNameRE.MatchString(ch.Name):
			p.add(key+".name", "%q is not a valid name; use 1-40 lower-case letters, digits, '_' or '-', starting with a letter", ch.Name)
		case names[ch.Name]:
			p.add(key+".name", "%q is used by two [[notify.channel]] tables; names must be unique", ch.Name)
		}
		names[ch.Name] = true
		for j, e := range ch.Events {
			if !kind.ValidPattern(e) {
				p.add(fmt.Sprintf("%s.events[%d]", key, j), "%q is not an event kind; use a kind (%s), a group such as \"capture.*\", or \"*\"", e, kindList())
			}
		}
		for j, s := range ch.Sources {
			if !sources[s] {
				p.add(fmt.Sprintf("%s.sources[%d]", key, j), "no [[source]] is named %q", s)
			}
		}
		web := ch.Kind == ChannelWebhook || ch.Kind == ChannelSlack
		switch ch.Kind {
		case ChannelWebhook, ChannelSlack, ChannelEmail:
		default:
			p.add(key+".kind", "%q is not a channel kind; use \"webhook\", \"slack\" or \"email\"", ch.Kind)
		}
		readSecretFile(p, key+".url_file", ch.URLFile, &ch.URL, key+".url")
		readSecretFile(p, key+".secret_file", ch.SecretFile, &ch.Secret, key+".secret")
		readSecretFile(p, key+".password_file", ch.PasswordFile, &ch.Password, key+".password")
		redact.Register(ch.URL)
		redact.Register(ch.Secret)
		redact.Register(ch.Password)
		if web {
			if u, err := url.Parse(ch.URL); ch.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				p.add(key+".url", "kind %q needs the URL to POST to (url or url_file), e.g. \"https://hooks.slack.com/services/…\"", ch.Kind)
			}
		}
		if ch.Kind == ChannelSlack && ch.Secret != "" {
			p.add(key+".secret", "Slack incoming webhooks are not signed; the secret is for kind \"webhook\"")
		}
		if ch.Kind != ChannelEmail {
			if ch.SMTP != "" || ch.From != "" || len(ch.To) > 0 || ch.Username != "" || ch.Password != "" || ch.TLS != "" || ch.CAFile != "" {
				p.add(key+".smtp", "smtp, tls, ca_file, username, password, from and to are for kind \"email\"")
			}
			continue
		}
		if ch.URL != "" || ch.Secret != "" {
			p.add(key+".url", "url and secret are for kinds \"webhook\" and \"slack\"")
		}
		if _, _, err := net.SplitHostPort(ch.SMTP); err != nil {
			p.add(key+".smtp", "%q is not host:port; write it like \"smtp.example.com:587\" (STARTTLS) or \"smtp.example.com:465\" (tls = \"tls\")", ch.SMTP)
		}
		if ch.TLS != TLSStartTLS && ch.TLS != TLSImplicit {
			p.add(key+".tls", "%q is not a TLS mode; use \"starttls\" (usually port 587) or \"tls\" (implicit TLS, usually port 465): mail is never sent in plain text", ch.TLS)
		}
		if ch.CAFile != "" {
			if _, err := os.ReadFile(ch.CAFile); err != nil {
				p.add(key+".ca_file", "cannot read %s: %v", ch.CAFile, err)
			}
		}
		if (ch.Username == "") != (ch.Password == "") {
			p.add(key+".username", "set both username and password (or password_file) for AUTH, or neither")
		}
		if !strings.Contains(ch.From, "@") {
			p.add(key+".from", "needs the sender's address, e.g. \"btfu@example.com\"")
		}
		if len(ch.To) == 0 {
			p.add(key+".to", "needs at least one recipient, e.g. [\"ops@example.com\"]")
		}
		for j, to := range ch.To {
			if !strings.Contains(to, "@") {
				p.add(fmt.Sprintf("%s.to[%d]", key, j), "%q is not an email address", to)
			}
		}
	}
}

func kindList() string {
	var out []string
	for _, k := range kind.All() {
		if k != kind.Test {
			out = append(out, string(k))
		}
	}
	return strings.Join(out, ", ")
}

func (c *Config) checkSource(p *Problems, i int, names map[string]bool, slots map[string]string) {
	s := &c.Sources[i]
	key := sourceKey(s, i)
	switch {
	case s.Name == "":
		p.add(key+".name", "every [[source]] needs a name, e.g. name = \"orders\"")
	case !sourceNameRE.MatchString(s.Name):
		p.add(key+".name", "%q is not a valid name; use 1-40 lower-case letters, digits, '_' or '-', starting with a letter", s.Name)
	case names[s.Name]:
		p.add(key+".name", "%q is used by two [[source]] tables; names must be unique", s.Name)
	}
	names[s.Name] = true

	readSecretFile(p, key+".dsn_file", s.DSNFile, &s.DSN, key+".dsn")
	if s.PasswordFile != "" {
		b, err := os.ReadFile(s.PasswordFile)
		if err != nil {
			p.add(key+".password_file", "cannot read %s: %v", s.PasswordFile, err)
		} else {
			s.Password = strings.TrimRight(string(b), "\r\n")
			redact.Register(s.Password)
		}
	}
	if s.DSN == "" {
		p.add(key+".dsn", "missing; set dsn = \"postgres://user@host:5432/db\" (or dsn_file)")
	} else {
		checkDSN(p, key+".dsn", s.DSN, s.Password)
	}
	if s.RestoreTarget != "" {
		checkDSN(p, key+".restore_target", s.RestoreTarget, "")
	}
	checkDrill(p, key, s)

	if !slotNameRE.MatchString(s.Slot) {
		p.add(key+".slot", "%q is not a valid replication slot name; use up to 63 lower-case letters, digits and _", s.Slot)
	} else if other, dup := slots[s.Slot]; dup {
		p.add(key+".slot", "%q is also the slot of source %q; give each source its own slot", s.Slot, other)
	}
	slots[s.Slot] = s.Name
	if !pubNameRE.MatchString(s.Publication) {
		p.add(key+".publication", "%q is not a plain publication name; use up to 63 lower-case letters, digits and _", s.Publication)
	}
	for _, list := range []struct {
		name     string
		patterns []string
	}{{"include_tables", s.IncludeTables}, {"exclude_tables", s.ExcludeTables}, {"replica_identity_full", s.ReplicaIdentityFull}} {
		for j, pat := range list.patterns {
			if _, err := path.Match(pat, ""); err != nil || !strings.Contains(pat, ".") {
				p.add(fmt.Sprintf("%s.%s[%d]", key, list.name, j), "%q is not a schema.table pattern; write it like \"public.orders\", \"public.*\" or \"audit.log_*\"", pat)
			}
		}
	}

	if s.TablesWithoutKey != KeylessLeaveOut && s.TablesWithoutKey != KeylessFull {
		p.add(key+".tables_without_key", "%q is not a choice; use %q (new tables without a primary key are not backed up, and btfu says so) or %q (btfu sets REPLICA IDENTITY FULL on them and backs them up)", s.TablesWithoutKey, KeylessLeaveOut, KeylessFull)
	}
	if _, err := time.LoadLocation(s.Timezone); err != nil {
		p.add(key+".timezone", "%q is not a time zone; use an IANA name such as \"UTC\", \"Europe/Paris\" or \"America/New_York\"", s.Timezone)
	}
	if err := CheckSchedule(s.Schedule); err != nil {
		p.add(key+".schedule", "%v", err)
	}
	if s.SegmentMaxSize < 64<<10 || s.SegmentMaxSize > 4<<30 {
		p.add(key+".segment_max_size", "%s is outside 64KiB to 4GiB", s.SegmentMaxSize)
	}
	if s.SegmentMaxAge.D() < 100*time.Millisecond || s.SegmentMaxAge.D() > time.Hour {
		p.add(key+".segment_max_age", "%s is outside 100ms to 1h", s.SegmentMaxAge)
	}
	if s.KeepBaseBackups < 1 {
		p.add(key+".keep_base_backups", "must be at least 1 (a restore needs a base backup)")
	}
	if s.KeepFor < 0 {
		p.add(key+".keep_for", "must not be negative")
	}
	for _, k := range []struct {
		name string
		n    int
	}{{"keep_daily", s.KeepDaily}, {"keep_weekly", s.KeepWeekly}, {"keep_monthly", s.KeepMonthly}} {
		if k.n < 0 {
			p.add(key+"."+k.name, "must not be negative (0 keeps none by this rule)")
		}
	}
	if s.PauseWALBudget < 16<<20 {
		p.add(key+".pause_wal_budget", "%s is too small; at least 16MiB (the default is 1GiB)", s.PauseWALBudget)
	}
	if s.MaxRetainedWAL < 16<<20 {
		p.add(key+".max_retained_wal", "%s is too small; at least 16MiB (the default is 4GiB)", s.MaxRetainedWAL)
	}
	if s.MaxLag.D() < 5*time.Second {
		p.add(key+".max_lag", "%s is too short; at least 5s (segments are stored every segment_max_age; the default is 5m)", s.MaxLag)
	}
	if !CompactOff(s.CompactAfter) {
		if d, err := ParseDuration(s.CompactAfter); err != nil {
			p.add(key+".compact_after", "%v; or \"off\"", err)
		} else if d.D() < time.Minute {
			p.add(key+".compact_after", "%s is too short; at least 1m (a restore may be reading the segments of the last minutes; the default is 1h), or \"off\"", s.CompactAfter)
		}
	}
	if s.JoinedBackupInterval.D() < time.Second {
		p.add(key+".joined_backup_interval", "%s is too short; at least 1s (each is a pg_dump of the whole database; the default is 10m)", s.JoinedBackupInterval)
	}
}

// DrillOff reports whether a drill schedule runs no scheduled drills.
func DrillOff(s string) bool { return s == "" || s == "off" }

// checkDrill checks drill_schedule and drill_target: a schedule needs a
// target, and the target is never the source's server (a drill writes a
// whole restore there).
func checkDrill(p *Problems, key string, s *Source) {
	if !DrillOff(s.DrillSchedule) {
		if _, err := cronParser.Parse(s.DrillSchedule); err != nil {
			p.add(key+".drill_schedule", "'%s' is not a cron expression; try '0 4 * * 0' (Sundays at 04:00, in timezone), '@weekly', or 'off'", s.DrillSchedule)
		}
		if s.DrillTarget == "" {
			p.add(key+".drill_target", "missing: drill_schedule needs a server where drills may create a scratch database, e.g. drill_target = \"postgres://btfu@scratch.example.com:5432/postgres\"")
		}
	}
	if s.DrillTarget == "" {
		return
	}
	checkDSN(p, key+".drill_target", s.DrillTarget, "")
	t, terr := pgconn.ParseConfig(s.DrillTarget)
	src, serr := pgconn.ParseConfig(s.DSN)
	if terr == nil && serr == nil && s.DSN != "" && t.Host == src.Host && t.Port == src.Port {
		p.add(key+".drill_target", "is the source's server (%s:%d): a drill restores a whole copy there, which could fill the source's disk; point it at another server", t.Host, t.Port)
	}
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ScheduleOff reports whether a schedule disables scheduled base backups.
func ScheduleOff(s string) bool { return s == "off" }

// CompactOff reports whether compact_after turns compaction off.
func CompactOff(s string) bool { return s == "off" }

// CompactAfterD is compact_after as a duration (valid when not off).
func (s *Source) CompactAfterD() time.Duration {
	d, _ := ParseDuration(s.CompactAfter)
	return d.D()
}

// CheckSchedule validates a base-backup schedule: a five-field cron
// expression, a descriptor such as "@daily", or "off".
func CheckSchedule(s string) error {
	if ScheduleOff(s) {
		return nil
	}
	if _, err := cronParser.Parse(s); err == nil {
		return nil
	}
	try := "'0 3 * * *' (daily at 03:00), '@hourly', or 'off'"
	if m := everyRE.FindStringSubmatch(s); m != nil {
		if strings.HasPrefix(strings.ToLower(m[2]), "h") {
			try = fmt.Sprintf("'0 */%s * * *'", m[1])
		} else {
			try = fmt.Sprintf("'*/%s * * * *'", m[1])
		}
	}
	return fmt.Errorf("'%s' is not a cron expression; try %s", s, try)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func readSecretFile(p *Problems, key, file string, dst *string, dstKey string) {
	if file == "" {
		return
	}
	if *dst != "" {
		p.add(key, "set either %s or %s, not both", dstKey, key[strings.LastIndex(key, ".")+1:])
		return
	}
	b, err := os.ReadFile(file)
	if err != nil {
		p.add(key, "cannot read %s: %v", file, err)
		return
	}
	*dst = strings.TrimSpace(string(b))
	if *dst == "" {
		p.add(key, "%s is empty", file)
	}
}

// checkDSN parses a connection string and registers its password.
func checkDSN(p *Problems, key, dsn, password string) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		p.add(key, "cannot parse %s: %s; write it like \"postgres://user@host:5432/db?sslmode=require\"", redact.DSN(dsn), redact.String(err.Error()))
		return
	}
	redact.Register(cfg.Password)
	redact.Register(password)
}

// checkEncryption reads and checks the age recipients ([storage] and each
// source's) into Storage.Recipients, and checks where the identity is.
func (c *Config) checkEncryption(p *Problems) {
	st := &c.Storage
	st.Recipients = map[string][]string{}
	if rs := recipients(p, "storage", st.EncryptTo, st.EncryptToFile); len(rs) > 0 {
		st.Recipients[""] = rs
	}
	for i := range c.Sources {
		s := &c.Sources[i]
		if len(s.EncryptTo) == 0 && s.EncryptToFile == "" {
			continue
		}
		st.Recipients[s.Name] = recipients(p, sourceKey(s, i), s.EncryptTo, s.EncryptToFile)
	}
	for name, rs := range st.Recipients {
		pq := 0
		for _, r := range rs {
			if strings.HasPrefix(r, "age1pq1") {
				pq++
			}
		}
		if pq > 0 && pq < len(rs) {
			key := "storage.encrypt_to"
			if name != "" {
				key = "source." + name + ".encrypt_to"
			}
			p.add(key, "mixes post-quantum (age1pq1…) and classic (age1…) keys; age encrypts one artifact to keys of one kind: use only one kind (all age1pq1… for post-quantum protection)")
		}
	}
	if st.AgeIdentity != "" {
		redact.Register(st.AgeIdentity)
		for _, line := range strings.Split(st.AgeIdentity, "\n") {
			redact.Register(strings.TrimSpace(line))
		}
		if st.AgeIdentityFile != "" {
			p.add("storage.age_identity", "set either age_identity or age_identity_file, not both")
		} else if _, err := agecrypt.ParseIdentities(strings.NewReader(st.AgeIdentity)); err != nil {
			p.add("storage.age_identity", "%v", err)
		}
	}
	if f := st.AgeIdentityFile; f != "" && st.Kind == "local" {
		if inside(f, st.Path) {
			p.add("storage.age_identity_file", "%s is inside storage.path (%s): whoever can read the backups could decrypt them; keep the identity elsewhere (another machine, a secrets manager, or at least another directory readable only by the restoring user)", f, st.Path)
		}
	}
}

// recipients reads encrypt_to and encrypt_to_file at key.
func recipients(p *Problems, key string, list []string, file string) []string {
	var out []string
	seen := map[string]bool{}
	for j, r := range list {
		rc, err := agecrypt.ParseRecipient(r)
		if err != nil {
			p.add(fmt.Sprintf("%s.encrypt_to[%d]", key, j), "%v", err)
			continue
		}
		if !seen[rc.Name] {
			seen[rc.Name] = true
			out = append(out, rc.Name)
		}
	}
	if file != "" {
		f, err := os.Open(file)
		if err != nil {
			p.add(key+".encrypt_to_file", "cannot read %s: %v", file, err)
			return out
		}
		defer f.Close()
		rs, err := agecrypt.ParseRecipients(f)
		if err != nil {
			p.add(key+".encrypt_to_file", "%s: %v", file, err)
			return out
		}
		for _, rc := range rs {
			if !seen[rc.Name] {
				seen[rc.Name] = true
				out = append(out, rc.Name)
			}
		}
	}
	return out
}

// inside reports whether path is dir or below it.
func inside(path, dir string) bool {
	a, err1 := filepath.Abs(path)
	b, err2 := filepath.Abs(dir)
	if err1 != nil || err2 != nil {
		return false
	}
	rel, err := filepath.Rel(b, a)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

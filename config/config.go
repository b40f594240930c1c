// Package config reads, checks and prints config.toml.
//
// The smallest useful file is one [[source]] with a name and a dsn; every
// other key has a default (see config.toml.example, which documents them
// all). Strings may use ${ENV_VAR}; secrets may come from files (dsn_file,
// password_file, secret_access_key_file). Every problem is reported with the
// key that holds it and a way to fix it, unknown keys included. Passwords
// are registered with package redact as soon as they are read, so no log
// line, error or `btfu config show` prints them.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/btfu/btfu/redact"
)

// EnvConfig names the environment variable holding the default config path.
const EnvConfig = "BTFU_CONFIG"

// DefaultPath is used when neither --config nor $BTFU_CONFIG is given.
const DefaultPath = "config.toml"

// Config is a checked configuration with defaults filled in.
type Config struct {
	Metadata Metadata `toml:"metadata"`
	Storage  Storage  `toml:"storage"`
	Log      Log      `toml:"log"`
	Engine   Engine   `toml:"engine"`
	API      API      `toml:"api"`
	Notify   Notify   `toml:"notify"`
	Sources  []Source `toml:"source"`

	// Path is the file this was loaded from.
	Path string `toml:"-"`
}

// Metadata selects the metadata store.
type Metadata struct {
	Driver  string `toml:"driver"`             // "sqlite" (default) or "postgres"
	Path    string `toml:"path"`               // sqlite file, default ./btfu.db
	DSN     string `toml:"dsn,omitempty"`      // postgres
	DSNFile string `toml:"dsn_file,omitempty"` // postgres, DSN read from this file
	Schema  string `toml:"schema"`             // postgres schema, default "btfu"
}

// Storage selects where artifacts (dumps, segments) are kept.
type Storage struct {
	Kind string `toml:"kind"`           // "local" (default) or "s3"
	Path string `toml:"path,omitempty"` // local directory, default ./data

	// EncryptTo and EncryptToFile: the age public keys (recipients) every
	// new artifact is encrypted to, unless its source names its own;
	// none stores artifacts plain. Both may be set (all keys are used).
	EncryptTo     []string `toml:"encrypt_to"`
	EncryptToFile string   `toml:"encrypt_to_file"`
	// AgeIdentityFile or AgeIdentity: the age identity (private key) that
	// decrypts, for restores, drills and verify; read only when an
	// encrypted artifact is. Never beside the data.
	AgeIdentityFile string `toml:"age_identity_file"`
	AgeIdentity     string `toml:"age_identity"`

	S3 S3 `toml:"s3"`

	// Recipients holds the checked public keys: "" for the storage-wide
	// ones, a source's name for a source that names its own.
	Recipients map[string][]string `toml:"-"`
}

// RecipientsFor returns the recipients of a new artifact of the named
// source: its own when it names some, else the storage-wide ones.
func (s *Storage) RecipientsFor(source string) []string {
	if r, ok := s.Recipients[source]; ok {
		return r
	}
	return s.Recipients[""]
}

// S3 configures an S3 or S3-compatible bucket. Credentials come from the
// explicit keys when set, else from the standard AWS chain (environment,
// shared config and credentials files, instance or task role).
type S3 struct {
	Bucket              string   `toml:"bucket,omitempty"`
	Prefix              string   `toml:"prefix,omitempty"`
	Region              string   `toml:"region,omitempty"`
	Endpoint            string   `toml:"endpoint,omitempty"`
	PathStyle           bool     `toml:"path_style"`
	AccessKeyID         string   `toml:"access_key_id,omitempty"`
	SecretAccessKey     string   `toml:"secret_access_key,omitempty"`
	SecretAccessKeyFile string   `toml:"secret_access_key_file,omitempty"`
	SessionToken        string   `toml:"session_token,omitempty"`
	PartSize            ByteSize `toml:"part_size"`
}

// Log configures logging.
type Log struct {
	Level  string `toml:"level"`  // debug, info (default), warn, error
	Format string `toml:"format"` // json (default) or text; headless output
	File   string `toml:"file"`   // where logs go while the TUI owns the screen, default ./btfu.log
}

// Engine tunes the running engine.
type Engine struct {
	// SpoolDir holds segments being written and large transactions while
	// they arrive; local disk. Default: the system temporary directory.
	SpoolDir string `toml:"spool_dir,omitempty"`
}

// API configures the local control API (GET /health, /metrics, /v1/...).
type API struct {
	// Socket is the unix socket path; default beside the metadata file
	// (btfu.db -> btfu.sock), or beside config.toml for postgres metadata;
	// "off" disables it.
	Socket string `toml:"socket,omitempty"`
	// Listen is an optional TCP address, e.g. "127.0.0.1:9187".
	Listen string `toml:"listen,omitempty"`
	// Token is the bearer token TCP clients other than loopback must send.
	Token     string `toml:"token,omitempty"`
	TokenFile string `toml:"token_file,omitempty"`
}

// Notify configures notifications: where engine events (failures,
// recoveries, completions) are sent. Changes apply without a restart.
type Notify struct {
	// QuietPeriod: repeated events of one problem kind for one source
	// are one message per quiet period (then one "recovered").
	QuietPeriod Duration `toml:"quiet_period"`
	// QuietPeriods overrides QuietPeriod per event kind.
	QuietPeriods map[string]Duration `toml:"quiet_periods"`
	Channels     []Channel           `toml:"channel"`
}

// Channel kinds.
const (
	ChannelWebhook = "webhook"
	ChannelSlack   = "slack"
	ChannelEmail   = "email"
)

// Email TLS modes.
const (
	TLSStartTLS = "starttls"
	TLSImplicit = "tls"
)

// Channel is one place notifications go.
type Channel struct {
	Name string `toml:"name"`
	Kind string `toml:"kind"` // ChannelWebhook, ChannelSlack, ChannelEmail
	// Events: kinds ("backup.failed"), groups ("capture.*") or "*"; empty
	// means every problem and its recovery, restores finished.
	Events []string `toml:"events"`
	// Sources limits the channel to these sources' events (engine-wide
	// events such as a rejected config reload go to every channel); empty
	// means all.
	Sources []string `toml:"sources"`

	// Webhook and Slack: the URL to POST to (a secret: Slack's holds its
	// token), or a file holding it.
	URL     string `toml:"url,omitempty"`
	URLFile string `toml:"url_file,omitempty"`
	// Webhook: signs the body with HMAC-SHA256 in X-Btfu-Signature-256.
	Secret     string `toml:"secret,omitempty"`
	SecretFile string `toml:"secret_file,omitempty"`

	// Email: the SMTP server (host:port), STARTTLS or implicit TLS (never
	// plain text), optional AUTH PLAIN, sender and recipients.
	SMTP         string   `toml:"smtp,omitempty"`
	TLS          string   `toml:"tls,omitempty"`
	CAFile       string   `toml:"ca_file,omitempty"`
	Username     string   `toml:"username,omitempty"`
	Password     string   `toml:"password,omitempty"`
	PasswordFile string   `toml:"password_file,omitempty"`
	From         string   `toml:"from,omitempty"`
	To           []string `toml:"to,omitempty"`
}

// SocketPath is where the control API listens, "" when disabled.
func (c *Config) SocketPath() string {
	switch {
	case c.API.Socket == "off":
		return ""
	case c.API.Socket != "":
		return c.API.Socket
	case c.Metadata.Driver == "sqlite":
		return strings.TrimSuffix(c.Metadata.Path, filepath.Ext(c.Metadata.Path)) + ".sock"
	}
	return filepath.Join(filepath.Dir(c.Path), "btfu.sock")
}

// Source is one protected database.
type Source struct {
	Name          string   `toml:"name"`
	DSN           string   `toml:"dsn,omitempty"`
	DSNFile       string   `toml:"dsn_file,omitempty"`
	PasswordFile  string   `toml:"password_file,omitempty"`
	Slot          string   `toml:"slot"`
	Publication   string   `toml:"publication"`
	IncludeTables []string `toml:"include_tables,omitempty"`
	ExcludeTables []string `toml:"exclude_tables,omitempty"`
	// Tables without a usable replica identity that btfu may set to
	// REPLICA IDENTITY FULL at registration (schema.table patterns).
	ReplicaIdentityFull []string `toml:"replica_identity_full,omitempty"`
	// TablesWithoutKey decides for tables (existing or created later)
	// that have no usable replica identity and match neither list above:
	// KeylessLeaveOut (not published, reported) or KeylessFull (btfu
	// sets REPLICA IDENTITY FULL on them and publishes them).
	TablesWithoutKey string `toml:"tables_without_key"`

	Schedule string `toml:"schedule"` // base-backup cron, "" or "off" for none
	Timezone string `toml:"timezone"`

	SegmentMaxSize ByteSize `toml:"segment_max_size"`
	SegmentMaxAge  Duration `toml:"segment_max_age"`

	// CompactAfter: each hour of segments is merged into one object once
	// it ended this long ago ("off": never), so a restore reads one
	// object per hour of history, not one per segment_max_age.
	CompactAfter string `toml:"compact_after"`

	KeepBaseBackups int      `toml:"keep_base_backups"`
	KeepFor         Duration `toml:"keep_for"`
	// KeepDaily, KeepWeekly and KeepMonthly keep, as restore points, the
	// newest base backup of each of that many most recent days, ISO weeks
	// and months (read in Timezone) that have one; 0 keeps none.
	KeepDaily   int `toml:"keep_daily"`
	KeepWeekly  int `toml:"keep_weekly"`
	KeepMonthly int `toml:"keep_monthly"`

	// Paused stops streaming and keeps the slot while the WAL it retains
	// stays under PauseWALBudget; past it the slot is dropped, the gap
	// recorded, and resuming starts a new chain with a base backup.
	Paused         bool     `toml:"paused"`
	PauseWALBudget ByteSize `toml:"pause_wal_budget"`
	// MaxRetainedWAL bounds the WAL the slot may hold back on the source
	// whatever capture is doing (stuck, failing, btfu stopped); past it
	// the slot is dropped and the gap recorded, so the source's disk
	// never fills. A paused source uses the smaller of the two budgets.
	MaxRetainedWAL ByteSize `toml:"max_retained_wal"`

	// MaxLag is the recovery point btfu promises: when the newest stored
	// commit or keepalive is older than this, the source needs attention
	// (TUI red line, /health 503).
	MaxLag Duration `toml:"max_lag"`

	// JoinedBackupInterval spaces the base backups taken because tables
	// with rows joined the publication (attached, given a key): one starts
	// this long after the newest base backup of any kind, however many
	// tables join meanwhile (a migration that attaches many partitions
	// makes one pg_dump, not one each, and no pg_dump starts right after
	// another: each holds locks that make the application's ALTER TABLE
	// wait). Until it runs, restores from older base backups name those
	// tables LEFT OUT.
	JoinedBackupInterval Duration `toml:"joined_backup_interval"`

	// EncryptTo and EncryptToFile: the age recipients of this source's
	// new artifacts, instead of [storage]'s.
	EncryptTo     []string `toml:"encrypt_to,omitempty"`
	EncryptToFile string   `toml:"encrypt_to_file,omitempty"`

	// RestoreTarget is the empty database the restore wizard and
	// `btfu restore` use when none is given: a scratch database for
	// restore drills. It is checked like any target (never the source).
	RestoreTarget string `toml:"restore_target,omitempty"`

	// DrillSchedule runs a restore drill on this cron (read in Timezone);
	// "" or "off" for none (`btfu drill` runs one now). DrillTarget is
	// a server (or a database on it) where a drill may create a scratch
	// database, restore into it and drop it afterwards; never the
	// source's server.
	DrillSchedule string `toml:"drill_schedule,omitempty"`
	DrillTarget   string `toml:"drill_target,omitempty"`

	// Password read from PasswordFile; overrides any password in DSN.
	Password string `toml:"-"`
}

// Defaults.
const (
	DefaultSQLitePath      = "btfu.db"
	DefaultDataPath        = "data"
	DefaultLogFile         = "btfu.log"
	DefaultPGSchema        = "btfu"
	DefaultSchedule        = "0 3 * * *"
	DefaultTimezone        = "UTC"
	DefaultSegmentMaxSize  = ByteSize(64 << 20)
	DefaultSegmentMaxAge   = Duration(500 * 1e6)
	DefaultCompactAfter    = "1h"
	DefaultKeepBaseBackups = 2
	DefaultKeepFor         = Duration(7 * 24 * 3600 * 1e9)
	DefaultS3PartSize      = ByteSize(16 << 20)
	DefaultPauseWALBudget  = ByteSize(1 << 30)
	DefaultMaxRetainedWAL  = ByteSize(4 << 30)
	DefaultMaxLag          = Duration(5 * 60 * 1e9)
	DefaultJoinedBackup    = Duration(10 * 60 * 1e9)
	DefaultQuietPeriod     = Duration(3600 * 1e9)
)

// tables_without_key values.
const (
	KeylessLeaveOut = "leave_out"
	KeylessFull     = "replica_identity_full"
)

// Problems is every problem found in a config file, each naming its key.
type Problems struct {
	Path  string
	Items []string
}

func (p *Problems) Error() string {
	if len(p.Items) == 1 {
		return fmt.Sprintf("%s: %s", p.Path, p.Items[0])
	}
	return fmt.Sprintf("%s has %d problems:\n  - %s", p.Path, len(p.Items), strings.Join(p.Items, "\n  - "))
}

func (p *Problems) add(key, format string, args ...any) {
	p.Items = append(p.Items, key+": "+fmt.Sprintf(format, args...))
}

// ResolvePath picks the config file: flag value, else $BTFU_CONFIG, else
// ./config.toml.
func ResolvePath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if env := os.Getenv(EnvConfig); env != "" {
		return env
	}
	return DefaultPath
}

// ErrNoFile means the config file does not exist.
var ErrNoFile = errors.New("config file not found")

// Load reads, expands, defaults and checks the file at path.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w; copy config.toml.example to %s and set one [[source]] with name and dsn, or pass --config FILE (or set $%s)", path, ErrNoFile, path, EnvConfig)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return Parse(path, b)
}

// Parse checks a config file's contents; path is used in messages and to
// resolve nothing else (relative paths are relative to the working
// directory, as documented).
func Parse(path string, data []byte) (*Config, error) {
	var c Config
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("%s: line %d: %s", path, perr.Position.Line, redact.String(perr.Message))
		}
		return nil, fmt.Errorf("%s: %s", path, redact.String(err.Error()))
	}
	c.Path = path
	p := &Problems{Path: path}
	for _, k := range md.Undecoded() {
		key := k.String()
		hint := ""
		if s := suggestKey(key); s != "" {
			hint = fmt.Sprintf("; did you mean %q?", s)
		}
		p.add(key, "unknown key%s (see config.toml.example for every key)", hint)
	}
	expandAll(&c, p)
	c.applyDefaults()
	c.check(p)
	if len(p.Items) > 0 {
		return nil, p
	}
	return &c, nil
}

func (c *Config) applyDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&c.Metadata.Driver, "sqlite")
	if c.Metadata.Driver == "sqlite" {
		def(&c.Metadata.Path, DefaultSQLitePath)
	}
	def(&c.Metadata.Schema, DefaultPGSchema)
	def(&c.Storage.Kind, "local")
	if c.Storage.Kind == "local" {
		def(&c.Storage.Path, DefaultDataPath)
	}
	if c.Storage.S3.PartSize == 0 {
		c.Storage.S3.PartSize = DefaultS3PartSize
	}
	def(&c.Log.Level, "info")
	def(&c.Log.Format, "json")
	def(&c.Log.File, DefaultLogFile)
	if c.Notify.QuietPeriod == 0 {
		c.Notify.QuietPeriod = DefaultQuietPeriod
	}
	for i := range c.Notify.Channels {
		if c.Notify.Channels[i].Kind == ChannelEmail {
			def(&c.Notify.Channels[i].TLS, TLSStartTLS)
		}
	}
	for i := range c.Sources {
		s := &c.Sources[i]
		derived := "btfu_" + strings.ReplaceAll(s.Name, "-", "_")
		def(&s.Slot, derived)
		def(&s.Publication, derived)
		def(&s.Schedule, DefaultSchedule)
		def(&s.Timezone, DefaultTimezone)
		def(&s.TablesWithoutKey, KeylessLeaveOut)
		if s.SegmentMaxSize == 0 {
			s.SegmentMaxSize = DefaultSegmentMaxSize
		}
		if s.SegmentMaxAge == 0 {
			s.SegmentMaxAge = DefaultSegmentMaxAge
		}
		def(&s.CompactAfter, DefaultCompactAfter)
		if s.KeepBaseBackups == 0 {
			s.KeepBaseBackups = DefaultKeepBaseBackups
		}
		if s.KeepFor == 0 {
			s.KeepFor = DefaultKeepFor
		}
		if s.PauseWALBudget == 0 {
			s.PauseWALBudget = DefaultPauseWALBudget
		}
		if s.MaxRetainedWAL == 0 {
			s.MaxRetainedWAL = DefaultMaxRetainedWAL
		}
		if s.MaxLag == 0 {
			s.MaxLag = DefaultMaxLag
		}
		if s.JoinedBackupInterval == 0 {
			s.JoinedBackupInterval = DefaultJoinedBackup
		}
	}
}

// Source returns the source named name.
func (c *Config) Source(name string) (*Source, error) {
	var names []string
	for i := range c.Sources {
		if c.Sources[i].Name == name {
			return &c.Sources[i], nil
		}
		names = append(names, c.Sources[i].Name)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no source %q: %s has no [[source]] yet", name, c.Path)
	}
	return nil, fmt.Errorf("no source %q in %s; configured: %s", name, c.Path, strings.Join(names, ", "))
}

// ConnConfig parses the source's DSN (with the password file applied).
func (s *Source) ConnConfig() (*pgconn.Config, error) {
	cfg, err := pgconn.ParseConfig(s.DSN)
	if err != nil {
		return nil, fmt.Errorf("source.%s.dsn: %s", s.Name, redact.String(err.Error()))
	}
	if s.Password != "" {
		cfg.Password = s.Password
	}
	return cfg, nil
}

// Describe names where the source lives, for messages: "host:port/db".
func (s *Source) Describe() string {
	cfg, err := s.ConnConfig()
	if err != nil {
		return s.Name
	}
	return fmt.Sprintf("%s:%d/%s", cfg.Host, cfg.Port, cfg.Database)
}

// Show renders the effective configuration (defaults included) as TOML with
// every secret masked.
func (c *Config) Show() (string, error) {
	cp := *c
	cp.Sources = append([]Source(nil), c.Sources...)
	cp.Metadata.DSN = redact.DSN(cp.Metadata.DSN)
	if cp.Metadata.DSNFile != "" {
		cp.Metadata.DSN = ""
	}
	if cp.Storage.S3.SecretAccessKeyFile != "" {
		cp.Storage.S3.SecretAccessKey = ""
	}
	if cp.Storage.S3.SecretAccessKey != "" {
		cp.Storage.S3.SecretAccessKey = redact.Mask
	}
	if cp.Storage.S3.SessionToken != "" {
		cp.Storage.S3.SessionToken = redact.Mask
	}
	if cp.Storage.AgeIdentity != "" {
		cp.Storage.AgeIdentity = redact.Mask
	}
	if cp.API.TokenFile != "" {
		cp.API.Token = ""
	}
	if cp.API.Token != "" {
		cp.API.Token = redact.Mask
	}
	cp.Notify.Channels = append([]Channel(nil), c.Notify.Channels...)
	for i := range cp.Notify.Channels {
		ch := &cp.Notify.Channels[i]
		for _, f := range []struct {
			value *string
			file  string
		}{{&ch.URL, ch.URLFile}, {&ch.Secret, ch.SecretFile}, {&ch.Password, ch.PasswordFile}} {
			switch {
			case f.file != "":
				*f.value = "" // shown as the file it comes from
			case *f.value != "":
				*f.value = redact.Mask
			}
		}
	}
	for i := range cp.Sources {
		cp.Sources[i].DSN = redact.DSN(cp.Sources[i].DSN)
		cp.Sources[i].RestoreTarget = redact.DSN(cp.Sources[i].RestoreTarget)
		cp.Sources[i].DrillTarget = redact.DSN(cp.Sources[i].DrillTarget)
		if cp.Sources[i].DSNFile != "" {
			cp.Sources[i].DSN = "" // shown as the file it comes from
		}
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# effective configuration from %s (defaults filled in, secrets masked)\n", c.Path)
	if err := toml.NewEncoder(&buf).Encode(cp); err != nil {
		return "", err
	}
	return redact.String(buf.String()), nil
}

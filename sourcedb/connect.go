package sourcedb

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/redact"
)

// defaultConnectTimeout applies when the DSN sets none, so a probe of an
// unreachable host ends with a message instead of hanging.
const defaultConnectTimeout = 10 * time.Second

// ConnError is a failed connection: one line naming the source, host and
// port, the cause, and what to try. It never holds a password.
type ConnError struct {
	Source string
	Host   string
	Port   uint16
	User   string
	Cause  string
	Hint   string
	Err    error
}

func (e *ConnError) Error() string {
	msg := fmt.Sprintf("cannot connect to source %s at %s:%d as %s: %s", e.Source, e.Host, e.Port, e.User, e.Cause)
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return redact.String(msg)
}

func (e *ConnError) Unwrap() error { return e.Err }

// ConnConfig parses the source's DSN, applying the password file and a
// connect timeout.
func ConnConfig(src *config.Source) (*pgconn.Config, error) {
	cfg, err := src.ConnConfig()
	if err != nil {
		return nil, err
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = defaultConnectTimeout
	}
	return cfg, nil
}

// Connect opens a regular connection to the source.
func Connect(ctx context.Context, src *config.Source) (*pgx.Conn, error) {
	pcfg, err := ConnConfig(src)
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig("")
	if err != nil {
		return nil, err
	}
	cfg.Config = *pcfg
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, connError(src.Name, pcfg, err)
	}
	return conn, nil
}

// TextFormSettings fix the text form of values: pgoutput writes each
// value with its type's output function in the walsender's session, and
// the source's database or role defaults (DateStyle 'SQL, DMY', a time
// zone abbreviation, IntervalStyle sql_standard, few float digits, a
// national lc_monetary) would otherwise give text that a restore reads
// back as another value, or not at all (DESIGN 2.4). Restores read with
// the same settings.
var TextFormSettings = map[string]string{
	"datestyle":          "ISO, MDY",
	"intervalstyle":      "postgres",
	"extra_float_digits": "3",
	"bytea_output":       "hex",
	"lc_monetary":        "C",
}

// ConnectReplication opens a replication connection (replication=database),
// the kind the slot is created and streamed on, with TextFormSettings.
func ConnectReplication(ctx context.Context, src *config.Source) (*pgconn.PgConn, error) {
	cfg, err := ConnConfig(src)
	if err != nil {
		return nil, err
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["replication"] = "database"
	for k, v := range TextFormSettings {
		cfg.RuntimeParams[k] = v
	}
	conn, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, connError(src.Name, cfg, err)
	}
	return conn, nil
}

func connError(source string, cfg *pgconn.Config, err error) *ConnError {
	ce := &ConnError{Source: source, Host: cfg.Host, Port: cfg.Port, User: cfg.User, Err: err}
	var pgErr *pgconn.PgError
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch {
	case errors.As(err, &pgErr):
		ce.Cause = pgErr.Message
		switch pgErr.Code {
		case "28P01", "28000":
			if strings.Contains(pgErr.Message, "no pg_hba.conf entry") {
				ce.Hint = "the server does not accept this client; allow its address in pg_hba.conf or the provider's network settings"
			} else {
				ce.Hint = "check the user and password (dsn, password_file or ${ENV_VAR})"
			}
		case "3D000":
			ce.Hint = "check the database name at the end of the dsn"
		case "53300":
			ce.Hint = "the server has no free connection slots"
		}
	case errors.As(err, &dnsErr):
		ce.Cause = "host not found"
		ce.Hint = "check the host name in the dsn"
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || isTimeout(err):
		ce.Cause = "timed out"
		ce.Hint = "is the host reachable from here (firewall, security group, allowed IPs)?"
	case errors.As(err, &opErr):
		ce.Cause = opErr.Err.Error()
		if strings.Contains(ce.Cause, "refused") {
			ce.Hint = "is PostgreSQL running there and is the port right?"
		}
	default:
		ce.Cause = innermost(err)
	}
	if strings.Contains(ce.Cause, "server refused TLS") || strings.Contains(ce.Cause, "SSL is not enabled") {
		ce.Hint = "the server does not offer TLS; use sslmode=disable only on a trusted network"
	}
	return ce
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func innermost(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

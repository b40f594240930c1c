package backup

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/btfu/btfu/config"
)

func TestDumpEnv(t *testing.T) {
	// pgconn would otherwise fill in passwords from the environment.
	t.Setenv("PGPASSWORD", "")
	t.Setenv("PGPASSFILE", filepath.Join(t.TempDir(), "none"))
	for _, c := range []struct {
		name, dsn, passwordFile string
		wantDSN, wantPassword   string
	}{
		{name: "url", dsn: "postgres://app:s3cret@db.example:5432/prod?sslmode=require",
			wantDSN: "postgres://app@db.example:5432/prod?sslmode=require", wantPassword: "s3cret"},
		{name: "url with special characters", dsn: "postgresql://app:p%40ss%3Aw%2Fd%20%25+x%27@db:5432/prod",
			wantDSN: "postgresql://app@db:5432/prod", wantPassword: "p@ss:w/d %+x'"},
		{name: "url password parameter", dsn: "postgres://app@db/prod?sslmode=disable&password=s%26cr%3Dt&application_name=x",
			wantDSN: "postgres://app@db/prod?sslmode=disable&application_name=x", wantPassword: "s&cr=t"},
		{name: "url with only a password parameter", dsn: "postgres://app@db/prod?password=pw",
			wantDSN: "postgres://app@db/prod", wantPassword: "pw"},
		{name: "url without password", dsn: "postgres://app@db/prod?sslmode=disable",
			wantDSN: "postgres://app@db/prod?sslmode=disable"},
		{name: "url with several hosts", dsn: "postgres://app:pw@h1:5432,h2:5433/prod?target_session_attrs=read-write",
			wantDSN: "postgres://app@h1:5432,h2:5433/prod?target_session_attrs=read-write", wantPassword: "pw"},
		{name: "keyword/value", dsn: "host=db port=5432 user=app password=s3cret dbname=prod",
			wantDSN: "host='db' port='5432' user='app' dbname='prod'", wantPassword: "s3cret"},
		{name: "keyword/value quoted", dsn: `host = db  password = 'it\'s a \\ "secret" ' dbname='my db'`,
			wantDSN: `host='db' dbname='my db'`, wantPassword: `it's a \ "secret" `},
		{name: "keyword/value escaped space", dsn: `password=a\ b user=app`,
			wantDSN: "user='app'", wantPassword: "a b"},
		{name: "keyword/value quote in another value", dsn: `host=db application_name='o\'brien'`,
			wantDSN: `host='db' application_name='o\'brien'`},
		{name: "password_file wins over the url", dsn: "postgres://app:old@db/prod", passwordFile: "from file",
			wantDSN: "postgres://app@db/prod", wantPassword: "from file"},
		{name: "password_file with keyword/value", dsn: "host=db user=app password=old", passwordFile: `f'\ x`,
			wantDSN: "host='db' user='app'", wantPassword: `f'\ x`},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := &config.Source{Name: "app", DSN: c.dsn, Password: c.passwordFile}
			dsn, env, err := DumpEnv(src)
			if err != nil {
				t.Fatal(err)
			}
			if dsn != c.wantDSN {
				t.Errorf("dsn = %s, want %s", dsn, c.wantDSN)
			}
			var wantEnv []string
			if c.wantPassword != "" {
				wantEnv = []string{"PGPASSWORD=" + c.wantPassword}
			}
			if !reflect.DeepEqual(env, wantEnv) {
				t.Errorf("env = %q, want %q", env, wantEnv)
			}
			// What the client programs will see is the same connection
			// as pgx sees, minus the password.
			orig, err := src.ConnConfig()
			if err != nil {
				t.Fatal(err)
			}
			stripped, err := pgconn.ParseConfig(dsn)
			if err != nil {
				t.Fatalf("parse %s: %v", dsn, err)
			}
			if stripped.Password != "" {
				t.Errorf("password left in %s", dsn)
			}
			if orig.Password != c.wantPassword {
				t.Errorf("pgx's password %q, want %q", orig.Password, c.wantPassword)
			}
			if orig.Host != stripped.Host || orig.Port != stripped.Port || orig.User != stripped.User ||
				orig.Database != stripped.Database || !reflect.DeepEqual(orig.RuntimeParams, stripped.RuntimeParams) ||
				len(orig.Fallbacks) != len(stripped.Fallbacks) {
				t.Errorf("connection differs:\n%+v\n%+v", orig, stripped)
			}
		})
	}
}

func TestDumpEnvErrorsHideValues(t *testing.T) {
	for _, dsn := range []string{"host=db password='hunter2 user=app", "host=db hunter2", "postgres://app:hunter2%zz@db/prod"} {
		_, _, err := DumpEnv(&config.Source{Name: "app", DSN: dsn})
		if err == nil {
			t.Errorf("%s: no error", dsn)
			continue
		}
		if strings.Contains(err.Error(), "hunter2") || !strings.HasPrefix(err.Error(), "source.app.dsn: ") {
			t.Errorf("error %q", err)
		}
	}
}

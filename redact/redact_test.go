package redact

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestDSN(t *testing.T) {
	cases := []struct{ in, want string }{
		{"postgres://app:s3cr%40t@db.example.com:5432/shop?sslmode=require", "postgres://app:xxxxx@db.example.com:5432/shop?sslmode=require"},
		{"postgresql://app@db/shop", "postgresql://app@db/shop"},
		{"postgres://app@db/shop?password=hunter22&sslmode=disable", "postgres://app@db/shop?password=xxxxx&sslmode=disable"},
		{"host=db user=app password=hunter22 dbname=shop", "host=db user=app password=xxxxx dbname=shop"},
		{"host=db password = 'with space\\'q' dbname=shop", "host=db password = xxxxx dbname=shop"},
		{"host=db PASSWORD=Loud dbname=shop", "host=db PASSWORD=xxxxx dbname=shop"},
	}
	for _, c := range cases {
		if got := DSN(c.in); got != c.want {
			t.Errorf("DSN(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestStringMasksDSNsInsideText(t *testing.T) {
	in := `connect "postgres://app:hunter22@db:5432/x": refused; also host=db password=other1`
	got := String(in)
	if strings.Contains(got, "hunter22") || strings.Contains(got, "other1") {
		t.Fatalf("password leaked: %s", got)
	}
}

func TestRegisteredSecretsAreMaskedEverywhere(t *testing.T) {
	Register("pa ss/w@rd!")
	Register("ab") // too short to mask globally
	got := String("auth failed for pa ss/w@rd! (escaped pa+ss%2Fw%40rd%21) ab")
	if strings.Contains(got, "pa ss/w@rd!") || strings.Contains(got, "pa+ss%2Fw%40rd%21") {
		t.Fatalf("secret leaked: %s", got)
	}
	if !strings.HasSuffix(got, " ab") {
		t.Fatalf("short secret should not garble text: %s", got)
	}
}

func TestHandlerMasksMessageAndAttributes(t *testing.T) {
	Register("topsecret-42")
	var buf bytes.Buffer
	log := slog.New(NewHandler(slog.NewJSONHandler(&buf, nil))).With("dsn", "postgres://u:topsecret-42@h/d")
	log.Info("using topsecret-42", "err", errors.New("bad password topsecret-42"),
		slog.Group("g", "k", "x topsecret-42"), "n", 3)
	out := buf.String()
	if strings.Contains(out, "topsecret-42") {
		t.Fatalf("secret in log: %s", out)
	}
	if !strings.Contains(out, `"n":3`) {
		t.Fatalf("non-string attrs lost: %s", out)
	}
}

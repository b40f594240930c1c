package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/btfu/btfu/redact"
)

func newAgeKey(t *testing.T) *age.X25519Identity {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// Recipients come from [storage] (list and file) and, instead, from a
// source that names its own.
func TestEncryptionRecipients(t *testing.T) {
	g1, g2, own := newAgeKey(t), newAgeKey(t), newAgeKey(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "recipients.txt")
	os.WriteFile(file, []byte("# ops\n"+g2.Recipient().String()+"\n"+g1.Recipient().String()+"\n"), 0o644)
	c, err := parse(t, `
[storage]
encrypt_to = ["`+g1.Recipient().String()+`"]
encrypt_to_file = "`+file+`"
[[source]]
name = "orders"
dsn = "postgres://u@h/d"
[[source]]
name = "billing"
dsn = "postgres://u@h/e"
encrypt_to = ["`+own.Recipient().String()+`"]
`)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.Storage.RecipientsFor("orders"), ","); got != g1.Recipient().String()+","+g2.Recipient().String() {
		t.Errorf("orders encrypts to %s", got)
	}
	if got := c.Storage.RecipientsFor("billing"); len(got) != 1 || got[0] != own.Recipient().String() {
		t.Errorf("billing encrypts to %v, want only its own key", got)
	}
	c, err = parse(t, "[[source]]\nname = \"orders\"\ndsn = \"postgres://u@h/d\"\n")
	if err != nil || len(c.Storage.RecipientsFor("orders")) != 0 {
		t.Errorf("no encrypt_to: recipients %v, %v; want none (stored plain)", c.Storage.RecipientsFor("orders"), err)
	}
}

func TestEncryptionProblemsNameTheKey(t *testing.T) {
	id := newAgeKey(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	for _, tc := range []struct {
		name, text, want string
	}{
		{"mixed kinds", "[storage]\nencrypt_to = [\"" + pqRecipient(t) + "\", \"" + id.Recipient().String() + "\"]", `storage.encrypt_to: mixes post-quantum`},
		{"not a key", "[storage]\nencrypt_to = [\"ssh-rsa AAAA\"]", `storage.encrypt_to[0]: "ssh-rsa AAAA" is not an age public key`},
		{"bad key", "[storage]\nencrypt_to = [\"age1qqqq\"]", `storage.encrypt_to[0]: "age1qqqq" is not a valid age public key`},
		{"private key as recipient", "[storage]\nencrypt_to = [\"" + id.String() + "\"]", `storage.encrypt_to[0]: this is an identity (a private key), not a recipient`},
		{"missing file", "[storage]\nencrypt_to_file = \"" + dir + "/nope\"", `storage.encrypt_to_file: cannot read`},
		{"source key", "[[source]]\nname = \"orders\"\ndsn = \"postgres://u@h/d\"\nencrypt_to = [\"age1x\"]", `source.orders.encrypt_to[0]:`},
		{"both identities", "[storage]\nage_identity = \"" + id.String() + "\"\nage_identity_file = \"/k\"", `storage.age_identity: set either age_identity or age_identity_file, not both`},
		{"bad identity", "[storage]\nage_identity = \"AGE-SECRET-KEY-1NOPE\"", `storage.age_identity: not an age identity file`},
		{"identity beside the data", "[storage]\npath = \"" + data + "\"\nage_identity_file = \"" + data + "/keys/age.txt\"", `storage.age_identity_file: ` + data + `/keys/age.txt is inside storage.path`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(t, tc.text)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant it to contain %s", err, tc.want)
			}
			if strings.Contains(err.Error(), id.String()) || strings.Contains(err.Error(), "1NOPE") {
				t.Errorf("the error shows a private key: %v", err)
			}
		})
	}
	// Beside it, not inside: fine.
	if _, err := parse(t, "[storage]\npath = \""+data+"\"\nage_identity_file = \""+dir+"/data-keys/age.txt\""); err != nil {
		t.Errorf("identity beside storage.path: %v", err)
	}
}

// An identity from the environment is a secret: masked by config show and
// in every log line.
func TestAgeIdentityFromEnvIsMasked(t *testing.T) {
	id := newAgeKey(t)
	t.Setenv("BTFU_TEST_AGE_IDENTITY", id.String())
	c, err := parse(t, "[storage]\nage_identity = \"${BTFU_TEST_AGE_IDENTITY}\"\nencrypt_to = [\""+id.Recipient().String()+"\"]\n")
	if err != nil {
		t.Fatal(err)
	}
	if c.Storage.AgeIdentity != id.String() {
		t.Fatal("identity not read from the environment")
	}
	out, err := c.Show()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "AGE-SECRET-KEY") || !strings.Contains(out, id.Recipient().String()) {
		t.Errorf("config show:\n%s", out)
	}
	if s := redact.String("key " + id.String()); strings.Contains(s, id.String()) {
		t.Errorf("redact leaves the identity: %s", s)
	}
}

func pqRecipient(t *testing.T) string {
	t.Helper()
	id, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	return id.Recipient().String()
}

package agecrypt_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/btfu/btfu/internal/s3test"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/agecrypt"
	"github.com/btfu/btfu/store/artifact/artifacttest"
	"github.com/btfu/btfu/store/artifact/local"
	"github.com/btfu/btfu/store/artifact/s3"
)

var srv *s3test.Server

func TestMain(m *testing.M) { os.Exit(s3test.Main(m, &srv)) }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// key is a fresh age key pair.
type key struct {
	id  *age.X25519Identity
	rcp agecrypt.Recipient
}

func newKey(t *testing.T) key {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	r, err := agecrypt.ParseRecipient(id.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	return key{id, r}
}

func (k key) name() string { return k.rcp.Name }

// to encrypts every key to rs.
func to(rs ...key) func(string) []agecrypt.Recipient {
	return func(string) []agecrypt.Recipient {
		var out []agecrypt.Recipient
		for _, r := range rs {
			out = append(out, r.rcp)
		}
		return out
	}
}

func identities(ks ...key) func() ([]age.Identity, error) {
	return func() ([]age.Identity, error) {
		var out []age.Identity
		for _, k := range ks {
			out = append(out, k.id)
		}
		return out, nil
	}
}

func newLocal(t *testing.T) *local.Store {
	t.Helper()
	s, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newS3(t *testing.T) *s3.Store {
	t.Helper()
	s, err := s3.New(ctx(t), s3.Config{
		Bucket: srv.CreateBucket(t), Endpoint: srv.Endpoint(), PathStyle: true, Region: s3test.Region,
		AccessKeyID: srv.AccessKey(), SecretAccessKey: srv.SecretKey(), PartSize: artifacttest.PartSize,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContractLocal(t *testing.T) {
	k := newKey(t)
	artifacttest.Run(t, func(t *testing.T) artifact.Store {
		return agecrypt.New(newLocal(t), agecrypt.Options{Recipients: to(k), Identities: identities(k)})
	})
}

func TestContractS3(t *testing.T) {
	k1, k2 := newKey(t), newKey(t)
	artifacttest.Run(t, func(t *testing.T) artifact.Store {
		return agecrypt.New(newS3(t), agecrypt.Options{Recipients: to(k1, k2), Identities: identities(k2)})
	})
}

// With no recipients the layer stores plain bytes, and still reads them.
func TestContractPlain(t *testing.T) {
	artifacttest.Run(t, func(t *testing.T) artifact.Store {
		return agecrypt.New(newLocal(t), agecrypt.Options{})
	})
}

func put(t *testing.T, s artifact.Store, key string, data []byte) (int64, string) {
	t.Helper()
	n, sum, err := artifact.PutHashed(ctx(t), s, key, bytes.NewReader(data))
	if err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
	return n, sum
}

func get(s artifact.Store, key string) ([]byte, error) {
	rc, err := s.Get(context.Background(), key)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

func stored(t *testing.T, s artifact.Store, key string) []byte {
	t.Helper()
	b, err := get(artifact.Stored(s), key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// What reaches the store below is an age file to every recipient, whose
// checksum PutHashed returns and whose header names the recipients.
func TestStoredBytesAreEncrypted(t *testing.T) {
	a, b := newKey(t), newKey(t)
	s := agecrypt.New(newLocal(t), agecrypt.Options{Recipients: to(a, b), Identities: identities(b)})
	data := bytes.Repeat([]byte("secret row 42\n"), 10000)
	n, sum := put(t, s, "src/base/1.dump", data)
	raw := stored(t, s, "src/base/1.dump")
	if !agecrypt.Encrypted(raw) || bytes.Contains(raw, []byte("secret row")) {
		t.Fatalf("stored bytes are not an age file, or hold the plaintext: %.60q", raw)
	}
	if int64(len(raw)) != n || sum != sha(raw) {
		t.Errorf("PutHashed = %d, %s; stored %d bytes with %s", n, sum, len(raw), sha(raw))
	}
	if got := agecrypt.Recipients(raw); strings.Join(got, ",") != a.name()+","+b.name() {
		t.Errorf("header names %q, want %s and %s", got, a.name(), b.name())
	}
	// Each recipient's identity alone decrypts it, here and with age itself.
	for _, k := range []key{a, b} {
		r, err := age.Decrypt(bytes.NewReader(raw), k.id)
		if err != nil {
			t.Fatalf("age.Decrypt with %s: %v", k.name(), err)
		}
		if got, _ := io.ReadAll(r); !bytes.Equal(got, data) {
			t.Fatal("age.Decrypt returned other bytes")
		}
	}
	got, err := get(s, "src/base/1.dump")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Get: %d bytes, %v", len(got), err)
	}
}

func sha(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// A missing or wrong identity fails Get with an error that names the
// artifact, the key it needs and what to do.
func TestMissingOrWrongIdentity(t *testing.T) {
	owner, other := newKey(t), newKey(t)
	inner := newLocal(t)
	w := agecrypt.New(inner, agecrypt.Options{Recipients: to(owner)})
	put(t, w, "src/segments/1/0A.ndjson.zst", []byte("changes"))
	const hint = "set [storage] age_identity_file"
	for _, tc := range []struct {
		name string
		ids  func() ([]age.Identity, error)
		cat  string
		want []string
	}{
		{"none", nil, agecrypt.CatNoIdentity, []string{"no identity is configured"}},
		{"wrong", identities(other), agecrypt.CatWrongIdentity, []string{"no configured identity decrypts it", "the configured identity is of " + other.name()}},
		{"unreadable", func() ([]age.Identity, error) { return nil, errors.New("open /keys/btfu.txt: no such file") }, agecrypt.CatIdentity, []string{"/keys/btfu.txt"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := agecrypt.New(inner, agecrypt.Options{Identities: tc.ids, IdentityHint: hint})
			_, err := get(s, "src/segments/1/0A.ndjson.zst")
			if agecrypt.Category(err) != tc.cat {
				t.Fatalf("error %v: category %q, want %q", err, agecrypt.Category(err), tc.cat)
			}
			for _, w := range append(tc.want, "artifact src/segments/1/0A.ndjson.zst", "needs the identity of "+owner.name(), hint, "["+tc.cat+"]") {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	// An identity that could not be read is read again at the next Get
	// (the file fixed meanwhile).
	fail := true
	s := agecrypt.New(inner, agecrypt.Options{Identities: func() ([]age.Identity, error) {
		if fail {
			return nil, errors.New("open /keys/btfu.txt: no such file")
		}
		return []age.Identity{owner.id}, nil
	}})
	if _, err := get(s, "src/segments/1/0A.ndjson.zst"); agecrypt.Category(err) != agecrypt.CatIdentity {
		t.Fatalf("unreadable identity: %v", err)
	}
	fail = false
	if got, err := get(s, "src/segments/1/0A.ndjson.zst"); err != nil || string(got) != "changes" {
		t.Fatalf("after the identity file is fixed: %q, %v", got, err)
	}
	// The right identity among others decrypts.
	s = agecrypt.New(inner, agecrypt.Options{Identities: identities(other, owner)})
	if got, err := get(s, "src/segments/1/0A.ndjson.zst"); err != nil || string(got) != "changes" {
		t.Fatalf("Get with the owner's identity: %q, %v", got, err)
	}
}

// Encryption is read from each object: plain objects, objects to old
// recipients and to new ones all read back through one layer, and plain
// objects need no identity at all.
func TestMixedObjects(t *testing.T) {
	old, cur := newKey(t), newKey(t)
	inner := newLocal(t)
	put(t, agecrypt.New(inner, agecrypt.Options{}), "src/base/plain.dump", []byte("plain"))
	put(t, agecrypt.New(inner, agecrypt.Options{Recipients: to(old)}), "src/segments/1/a", []byte("old key"))
	perSource := func(key string) []agecrypt.Recipient {
		if strings.HasPrefix(key, "src/") {
			return []agecrypt.Recipient{cur.rcp}
		}
		return nil
	}
	w := agecrypt.New(inner, agecrypt.Options{Recipients: perSource, Identities: identities(old, cur)})
	put(t, w, "src/segments/1/b", []byte("new key"))
	put(t, w, "other/segments/1/c", []byte("other source, plain"))
	for k, want := range map[string]string{"src/base/plain.dump": "plain", "src/segments/1/a": "old key", "src/segments/1/b": "new key", "other/segments/1/c": "other source, plain"} {
		if got, err := get(w, k); err != nil || string(got) != want {
			t.Errorf("Get(%s) = %q, %v; want %q", k, got, err, want)
		}
	}
	if agecrypt.Encrypted(stored(t, w, "other/segments/1/c")) || !agecrypt.Encrypted(stored(t, w, "src/segments/1/b")) {
		t.Error("per-key recipients not applied")
	}
	if got := agecrypt.Recipients(stored(t, w, "src/segments/1/b")); len(got) != 1 || got[0] != cur.name() {
		t.Errorf("new object names %q, want %s", got, cur.name())
	}
	noID := agecrypt.New(inner, agecrypt.Options{})
	if got, err := get(noID, "src/base/plain.dump"); err != nil || string(got) != "plain" {
		t.Errorf("a plain object without identity: %q, %v", got, err)
	}
	if _, err := get(noID, "src/segments/1/a"); agecrypt.Category(err) != agecrypt.CatNoIdentity || !strings.Contains(err.Error(), old.name()) {
		t.Errorf("an object to the old key without identity: %v", err)
	}
}

// Damage to the header fails Get; damage to the payload fails the read
// that meets it; both say the object is damaged.
func TestDamaged(t *testing.T) {
	k := newKey(t)
	dir := t.TempDir()
	inner, err := local.New(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := agecrypt.New(inner, agecrypt.Options{Recipients: to(k), Identities: identities(k)})
	data := artifacttest.Data(5, 300<<10)
	for _, tc := range []struct {
		name string
		at   func(raw []byte) int
	}{
		{"header", func(raw []byte) int { return bytes.Index(raw, []byte("\n---")) + 10 }},
		{"payload", func(raw []byte) int { return len(raw) - 100 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			put(t, s, "k", data)
			p := filepath.Join(dir, "k")
			raw, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			raw[tc.at(raw)] ^= 1
			if err := os.WriteFile(p, raw, 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = get(s, "k")
			if agecrypt.Category(err) != agecrypt.CatDamaged || !strings.Contains(err.Error(), "artifact k") {
				t.Fatalf("got %v, want a damaged-artifact error naming k", err)
			}
		})
	}
	// Cut short.
	put(t, s, "k", data)
	if err := os.Truncate(filepath.Join(dir, "k"), 100<<10); err != nil {
		t.Fatal(err)
	}
	if _, err := get(s, "k"); agecrypt.Category(err) != agecrypt.CatDamaged {
		t.Fatalf("truncated: got %v, want a damaged-artifact error", err)
	}
}

// artifact.Decode turns stored bytes into what Get returns, so a reader
// of the stored bytes (checksum) can check content in the same pass.
func TestDecode(t *testing.T) {
	k := newKey(t)
	s := agecrypt.New(newLocal(t), agecrypt.Options{Recipients: to(k), Identities: identities(k)})
	data := artifacttest.Data(9, 200<<10)
	put(t, s, "k", data)
	r, err := artifact.Decode(s, "k", bytes.NewReader(stored(t, s, "k")))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(r); !bytes.Equal(got, data) {
		t.Fatal("Decode returned other bytes")
	}
}

func TestParseRecipients(t *testing.T) {
	a, b := newKey(t), newKey(t)
	rs, err := agecrypt.ParseRecipients(strings.NewReader("# ops team\n" + a.name() + "\n\n  " + b.name() + "  \n"))
	if err != nil || len(rs) != 2 || rs[0].Name != a.name() || rs[1].Name != b.name() {
		t.Fatalf("ParseRecipients = %v, %v", rs, err)
	}
	for in, want := range map[string]string{
		"# nothing\n":          "no recipient",
		a.name() + "\nage1x\n": "line 2",
		a.id.String() + "\n":   "not a recipient",
		"ssh-ed25519 AAAA\n":   "not an age public key",
	} {
		_, err := agecrypt.ParseRecipients(strings.NewReader(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRecipients(%.20q) error %v, want it to say %q", in, err, want)
		}
		if err != nil && strings.Contains(err.Error(), "AGE-SECRET-KEY") {
			t.Errorf("error quotes a private key: %v", err)
		}
	}
}

// counting counts the bytes read through it.
type counting struct {
	r io.Reader
	n *int64
}

func (c counting) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	return n, err
}

// lagStore records, as the store below reads the encrypted stream, how
// far the source has been read ahead of it: what the layer holds.
type lagStore struct {
	artifact.Store
	source *int64
	maxLag int64
}

func (l *lagStore) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	var below int64
	return l.Store.Put(ctx, key, readFunc(func(p []byte) (int, error) {
		n, err := r.Read(p)
		below += int64(n)
		l.maxLag = max(l.maxLag, *l.source-below)
		return n, err
	}))
}

type readFunc func([]byte) (int, error)

func (f readFunc) Read(p []byte) (int, error) { return f(p) }

// A large object streams through the layer in both directions holding at
// most a chunk or two: the source is never read far ahead of the store
// below, nor the stored bytes ahead of the reader.
func TestStreamsThroughSmallBuffer(t *testing.T) {
	const size = 48 << 20
	const bound = 256 << 10
	k := newKey(t)
	var source int64
	below := &lagStore{Store: newLocal(t), source: &source}
	s := agecrypt.New(below, agecrypt.Options{Recipients: to(k), Identities: identities(k)})
	src := &zeros{left: size}
	if _, err := s.Put(ctx(t), "big", counting{src, &source}); err != nil {
		t.Fatal(err)
	}
	if below.maxLag > bound {
		t.Errorf("Put: the source was read %d KiB ahead of the store below; want at most %d KiB", below.maxLag>>10, bound>>10)
	}
	// Get: the stored bytes read from below never run far ahead of the
	// plaintext handed out.
	var raw int64
	rc, err := agecrypt.New(readCounter{below.Store, &raw}, agecrypt.Options{Identities: identities(k)}).Get(ctx(t), "big")
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var plain, maxAhead int64
	buf := make([]byte, 4096)
	for {
		n, err := rc.Read(buf)
		plain += int64(n)
		maxAhead = max(maxAhead, raw-plain)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if plain != size {
		t.Fatalf("read %d bytes, want %d", plain, size)
	}
	if maxAhead > bound {
		t.Errorf("Get: read %d KiB of stored bytes ahead of the caller; want at most %d KiB", maxAhead>>10, bound>>10)
	}
	t.Logf("put: source at most %d KiB ahead; get: stored bytes at most %d KiB ahead", below.maxLag>>10, maxAhead>>10)
}

type zeros struct{ left int64 }

func (z *zeros) Read(p []byte) (int, error) {
	if z.left == 0 {
		return 0, io.EOF
	}
	n := int(min(int64(len(p)), z.left))
	clear(p[:n])
	z.left -= int64(n)
	return n, nil
}

// readCounter counts the bytes read from objects of the store it wraps.
type readCounter struct {
	artifact.Store
	n *int64
}

func (r readCounter) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := r.Store.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{counting{rc, r.n}, rc}, nil
}

// Post-quantum (hybrid) keys work like classic ones; one artifact cannot
// mix the two kinds (age refuses), and Put says which setting to fix.
func TestPostQuantumRecipients(t *testing.T) {
	pq, err := age.GenerateHybridIdentity()
	if err != nil {
		t.Fatal(err)
	}
	rcp, err := agecrypt.ParseRecipient(pq.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	inner := newLocal(t)
	s := agecrypt.New(inner, agecrypt.Options{
		Recipients: func(string) []agecrypt.Recipient { return []agecrypt.Recipient{rcp} },
		Identities: func() ([]age.Identity, error) { return []age.Identity{pq}, nil },
	})
	put(t, s, "k", []byte("quantum-safe"))
	if got, err := get(s, "k"); err != nil || string(got) != "quantum-safe" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	names := agecrypt.Recipients(stored(t, s, "k"))
	if len(names) != 1 || !strings.HasPrefix(names[0], "age1pq1") || len(names[0]) > 100 {
		t.Errorf("header names %q, want the key abbreviated", names)
	}
	classic := newKey(t)
	mixed := agecrypt.New(inner, agecrypt.Options{Recipients: func(string) []agecrypt.Recipient { return []agecrypt.Recipient{rcp, classic.rcp} }})
	_, err = mixed.Put(ctx(t), "m", strings.NewReader("x"))
	if agecrypt.Category(err) != agecrypt.CatEncrypt || !strings.Contains(err.Error(), "encrypt_to") {
		t.Fatalf("mixed kinds: %v", err)
	}
}

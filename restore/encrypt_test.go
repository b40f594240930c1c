package restore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/btfu/btfu/internal/pgtest"
	"github.com/btfu/btfu/internal/s3test"
	"github.com/btfu/btfu/store/artifact"
	"github.com/btfu/btfu/store/artifact/agecrypt"
	"github.com/btfu/btfu/store/artifact/local"
	"github.com/btfu/btfu/store/artifact/s3"
)

type ageKey struct {
	id  *age.X25519Identity
	rcp agecrypt.Recipient
}

func newAgeKey(t *testing.T) ageKey {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	r, err := agecrypt.ParseRecipient(id.Recipient().String())
	if err != nil {
		t.Fatal(err)
	}
	return ageKey{id, r}
}

func (k ageKey) name() string { return k.rcp.Name }

// ageLayer wraps inner: new objects go to the recipients *to holds at the
// time (a configuration that changes), read with ids.
func ageLayer(inner artifact.Store, to *atomic.Pointer[[]agecrypt.Recipient], ids ...ageKey) *agecrypt.Store {
	return agecrypt.New(inner, agecrypt.Options{
		Recipients: func(string) []agecrypt.Recipient {
			if p := to.Load(); p != nil {
				return *p
			}
			return nil
		},
		Identities: func() ([]age.Identity, error) {
			var out []age.Identity
			for _, k := range ids {
				out = append(out, k.id)
			}
			return out, nil
		},
		IdentityHint: "set storage.age_identity_file",
	})
}

func recipients(ks ...ageKey) *[]agecrypt.Recipient {
	var out []agecrypt.Recipient
	for _, k := range ks {
		out = append(out, k.rcp)
	}
	return &out
}

// storedRecipients maps every stored object of the source to the
// recipients its header names ("plain" when it is not encrypted).
func storedRecipients(t *testing.T, arts artifact.Store) map[string]string {
	t.Helper()
	ctx := context.Background()
	below := artifact.Stored(arts)
	infos, err := below.List(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, in := range infos {
		rc, err := below.Get(ctx, in.Key)
		if err != nil {
			t.Fatal(err)
		}
		head := make([]byte, 4096)
		n, _ := io.ReadFull(rc, head)
		rc.Close()
		if !agecrypt.Encrypted(head[:n]) {
			out[in.Key] = "plain"
			continue
		}
		out[in.Key] = strings.Join(agecrypt.Recipients(head[:n]), ",")
	}
	return out
}

func kinds(keys map[string]string) map[string]int {
	n := map[string]int{}
	for k := range keys {
		switch {
		case strings.Contains(k, "/base/"):
			n["base"]++
		case strings.Contains(k, "/schema/"):
			n["schema"]++
		case strings.Contains(k, "/segments/"):
			n["segment"]++
		}
	}
	return n
}

// Every artifact kind captured through the age layer is stored encrypted,
// on local disk and on S3; verify checks checksums without the identity
// and content with it; a restore to a point of the encrypted chain equals
// the source there; without the identity, or with another one, the restore
// stops before the target, naming the artifact and the key it needs.
func TestEncryptedChain(t *testing.T) {
	for _, backend := range []string{"local", "s3"} {
		t.Run(backend, func(t *testing.T) {
			var inner artifact.Store
			var err error
			if backend == "local" {
				inner, err = local.New(t.TempDir())
			} else {
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				inner, err = s3.New(ctx, s3.Config{Bucket: s3srv.CreateBucket(t), Prefix: "btfu", Endpoint: s3srv.Endpoint(), PathStyle: true,
					Region: s3test.Region, AccessKeyID: s3srv.AccessKey(), SecretAccessKey: s3srv.SecretKey()})
			}
			if err != nil {
				t.Fatal(err)
			}
			owner, other := newAgeKey(t), newAgeKey(t)
			var to atomic.Pointer[[]agecrypt.Recipient]
			to.Store(recipients(owner))
			arts := ageLayer(inner, &to, owner)
			e := capturingTo(t, arts)
			source.Exec(t, e.db, "INSERT INTO items(name, qty) SELECT 'i' || g, g FROM generate_series(1, 200) g; INSERT INTO toasty VALUES (1, repeat('x', 5000), 1); INSERT INTO tags VALUES (1, 'a'), (1, 'a')")
			m1 := e.mark(t, "inserted")
			source.Exec(t, e.db, "UPDATE items SET qty = -qty WHERE id % 2 = 0; DELETE FROM items WHERE id % 5 = 0; UPDATE toasty SET n = 2; DELETE FROM tags WHERE ctid = (SELECT min(ctid) FROM tags)")
			m2 := e.mark(t, "changed")
			e.waitStored(t, m2)

			stored := storedRecipients(t, arts)
			for key, to := range stored {
				if to != owner.name() {
					t.Errorf("%s is stored %s, want encrypted to %s", key, to, owner.name())
				}
			}
			if k := kinds(stored); k["base"] != 1 || k["schema"] != 1 || k["segment"] == 0 {
				t.Fatalf("stored %v: want a base backup, a schema snapshot and segments", k)
			}
			// Compression happens before encryption: a segment decrypted
			// with age alone is a zstd stream.
			for key := range stored {
				if !strings.Contains(key, "/segments/") {
					continue
				}
				rc, err := artifact.Stored(arts).Get(context.Background(), key)
				if err != nil {
					t.Fatal(err)
				}
				plain, err := age.Decrypt(rc, owner.id)
				if err != nil {
					t.Fatal(err)
				}
				magic := make([]byte, 4)
				io.ReadFull(plain, magic)
				rc.Close()
				if !bytes.Equal(magic, []byte{0x28, 0xB5, 0x2F, 0xFD}) {
					t.Errorf("segment %s decrypts to % x..., want a zstd frame", key, magic)
				}
			}

			ctx := context.Background()
			withKey, err := Verify(ctx, e.meta, arts, e.id)
			if err != nil || len(withKey.Problems) > 0 || withKey.Unchecked != 0 || withKey.Encrypted != withKey.BaseBackups+withKey.Segments {
				t.Fatalf("verify with the identity: %v %+v", err, withKey)
			}
			noKey := ageLayer(inner, &to)
			without, err := Verify(ctx, e.meta, noKey, e.id)
			if err != nil || len(without.Problems) > 0 || without.Unchecked != without.Encrypted || without.Encrypted == 0 {
				t.Fatalf("verify without identity: %v %+v", err, without)
			}

			for _, m := range []mark{m1, m2} {
				db, _, err := e.restore(t, Target{Time: m.at})
				if err != nil {
					t.Fatal(err)
				}
				got := contentHash(t, target, db)
				for _, tbl := range tables {
					if got[tbl] != m.hash[tbl] {
						t.Errorf("%s: table %s differs from the source", m.name, tbl)
					}
				}
			}

			base := ""
			for k := range stored {
				if strings.Contains(k, "/base/") {
					base = k
				}
			}
			for _, tc := range []struct {
				name string
				arts artifact.Store
				cat  string
			}{
				{"no identity", noKey, agecrypt.CatNoIdentity},
				{"wrong identity", ageLayer(inner, &to, other), agecrypt.CatWrongIdentity},
			} {
				plan, err := MakePlan(ctx, e.meta, e.id, Target{Latest: true})
				if err != nil {
					t.Fatal(err)
				}
				db := target.CreateDB(t)
				_, err = Run(ctx, e.meta, tc.arts, e.id, plan, Options{TargetDSN: target.DSN(db)})
				if agecrypt.Category(err) != tc.cat {
					t.Fatalf("%s: restore error %v, want category %s", tc.name, err, tc.cat)
				}
				for _, want := range []string{base, "needs the identity of " + owner.name(), "storage.age_identity_file", "nothing was written to the target"} {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("%s: error %q does not say %q", tc.name, err, want)
					}
				}
				if n := pgtest.QueryValue[int64](t, target, db, "SELECT count(*) FROM pg_class WHERE relname = 'items'"); n != 0 {
					t.Errorf("%s: the target was touched", tc.name)
				}
			}
			if backend != "local" {
				return
			}
			// Without the identity, verify still finds a damaged artifact by
			// its checksum.
			segs, _ := e.meta.ListSegments(ctx, e.id, 0)
			key := segs[len(segs)-1].ArtifactKey
			damage(t, inner.(*local.Store), key)
			rep, err := Verify(ctx, e.meta, noKey, e.id)
			if err != nil || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], key) || !strings.Contains(rep.Problems[0], ErrCorruptArtifact.Error()) {
				t.Fatalf("verify without identity of a damaged segment: %v %v", err, rep.Problems)
			}
		})
	}
}

func damage(t *testing.T, s *local.Store, key string) {
	t.Helper()
	ctx := context.Background()
	rc, err := s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(rc)
	rc.Close()
	data[len(data)-20] ^= 1
	if _, err := s.Put(ctx, key, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

// Verify checks an encrypted artifact's content only with the identity:
// a segment that is a well-formed age file of something other than a
// segment, recorded with its right checksum, passes without the identity
// and is a problem with it.
func TestVerifyChecksContentWithTheIdentity(t *testing.T) {
	inner, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	k := newAgeKey(t)
	var to atomic.Pointer[[]agecrypt.Recipient]
	to.Store(recipients(k))
	arts := ageLayer(inner, &to, k)
	e := capturingTo(t, arts)
	source.Exec(t, e.db, "INSERT INTO items(name) VALUES ('a')")
	m := e.mark(t, "one")
	e.waitStored(t, m)
	stop := e.stop
	var once sync.Once
	e.stop = func() { once.Do(stop) } // the cleanup stops it again
	e.stop()
	ctx := context.Background()
	segs, _ := e.meta.ListSegments(ctx, e.id, 0)
	last := segs[len(segs)-1]
	key := strings.Replace(last.ArtifactKey, ".ndjson.zst", "-bogus.ndjson.zst", 1)
	n, sum, err := artifact.PutHashed(ctx, arts, key, strings.NewReader("not a segment"))
	if err != nil {
		t.Fatal(err)
	}
	bogus := last
	bogus.ID, bogus.ArtifactKey, bogus.StoredBytes, bogus.SHA256 = 0, key, n, sum
	bogus.PrevEndLSN, bogus.FirstCommitLSN, bogus.LastCommitLSN, bogus.EndLSN = last.EndLSN, last.EndLSN+1, last.EndLSN+1, last.EndLSN+2
	if _, err := e.meta.AddSegment(ctx, bogus); err != nil {
		t.Fatal(err)
	}
	without, err := Verify(ctx, e.meta, ageLayer(inner, &to), e.id)
	if err != nil || len(without.Problems) != 0 || without.Unchecked == 0 {
		t.Fatalf("without identity: %v %+v", err, without)
	}
	with, err := Verify(ctx, e.meta, arts, e.id)
	if err != nil || len(with.Problems) != 1 || !strings.Contains(with.Problems[0], key) || !strings.Contains(with.Problems[0], "unreadable") {
		t.Fatalf("with the identity: %v %v", err, with.Problems)
	}
}

// A chain whose base backup is plain, whose next segments are encrypted
// to one key and the last ones to another (encrypt_to set, then the key
// rotated) restores with the identities of both keys; without the newer
// one the restore names a segment and that key.
func TestMixedChainRestores(t *testing.T) {
	inner, err := local.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	k1, k2 := newAgeKey(t), newAgeKey(t)
	var to atomic.Pointer[[]agecrypt.Recipient] // nil: plain
	arts := ageLayer(inner, &to, k1, k2)
	e := capturingTo(t, arts)
	source.Exec(t, e.db, "INSERT INTO items(name, qty) SELECT 'plain' || g, g FROM generate_series(1, 50) g")
	m0 := e.mark(t, "plain")
	e.waitStored(t, m0)
	to.Store(recipients(k1))
	source.Exec(t, e.db, "UPDATE items SET qty = qty + 100 WHERE id % 2 = 0; INSERT INTO toasty VALUES (1, 'k1', 1)")
	m1 := e.mark(t, "k1")
	e.waitStored(t, m1)
	to.Store(recipients(k2))
	source.Exec(t, e.db, "DELETE FROM items WHERE id % 3 = 0; UPDATE toasty SET n = 2; INSERT INTO tags VALUES (2, 'k2')")
	m2 := e.mark(t, "k2")
	e.waitStored(t, m2)

	byKey := map[string]int{}
	var k2seg string
	for key, r := range storedRecipients(t, arts) {
		if strings.Contains(key, "/base/") && r != "plain" {
			t.Errorf("base backup %s stored %s, want plain", key, r)
		}
		if strings.Contains(key, "/segments/") {
			byKey[r]++
			if r == k2.name() {
				k2seg = key
			}
		}
	}
	if byKey["plain"] == 0 || byKey[k1.name()] == 0 || byKey[k2.name()] == 0 {
		t.Fatalf("segments by recipient: %v; want plain ones, some to k1 and some to k2", byKey)
	}
	for _, m := range []mark{m0, m1, m2} {
		db, _, err := e.restore(t, Target{LSN: m.lsn})
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		got := contentHash(t, target, db)
		for _, tbl := range tables {
			if got[tbl] != m.hash[tbl] {
				t.Errorf("%s: table %s differs from the source", m.name, tbl)
			}
		}
	}
	// With only the old key, the segments to the new one are named.
	ctx := context.Background()
	plan, err := MakePlan(ctx, e.meta, e.id, Target{LSN: m2.lsn})
	if err != nil {
		t.Fatal(err)
	}
	_, err = Run(ctx, e.meta, ageLayer(inner, &to, k1), e.id, plan, Options{TargetDSN: target.DSN(target.CreateDB(t))})
	var ae *agecrypt.Error
	if !errors.As(err, &ae) || ae.Category != agecrypt.CatWrongIdentity || !strings.Contains(err.Error(), k2.name()) || !strings.Contains(err.Error(), "the configured identity is of "+k1.name()) {
		t.Fatalf("restore with the old key only: %v", err)
	}
	if !strings.Contains(ae.Key, "/segments/") {
		t.Errorf("the error names %s, want a segment (such as %s)", ae.Key, k2seg)
	}
}

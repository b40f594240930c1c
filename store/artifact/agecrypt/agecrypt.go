// Package agecrypt is an artifact.Layer that encrypts artifacts with age
// (filippo.io/age) to one or more recipients before they reach the store
// below, and decrypts them on the way back.
//
// Encryption streams in 64 KiB chunks (age's STREAM), so memory stays
// bounded whatever the artifact's size. Compression happens above this
// layer: what is encrypted is already compressed.
//
// Whether a stored object is encrypted is read from the object itself (the
// age header), never from the configuration: a chain whose base backup was
// stored plain and whose later segments are encrypted, or encrypted to
// recipients since replaced, restores as long as an identity for each
// encrypted object is given.
//
// Each encrypted object's header also names the recipients it was
// encrypted to (public keys, in an extra "btfu-recipient" stanza that age
// itself ignores), so that a missing or wrong identity can be reported with
// the key the artifact needs. The age CLI decrypts these objects as usual:
// `age -d -i key.txt`.
package agecrypt

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	"filippo.io/age"

	"github.com/btfu/btfu/store/artifact"
)

// Magic starts every age file (its header's version line).
const Magic = "age-encryption.org/v1\n"

// hintType is the type of the header stanza naming a recipient.
const hintType = "btfu-recipient"

// maxHeader bounds how much of an object is read to find the recipients'
// names (a header with many post-quantum recipients is a few KiB).
const maxHeader = 64 << 10

// Error categories: what went wrong reading an encrypted artifact.
const (
	// CatNoIdentity: the artifact is encrypted and no identity is
	// configured.
	CatNoIdentity = "encryption_no_identity"
	// CatWrongIdentity: no configured identity is one of the artifact's
	// recipients.
	CatWrongIdentity = "encryption_wrong_identity"
	// CatIdentity: the configured identity cannot be read.
	CatIdentity = "encryption_identity"
	// CatDamaged: the age header or payload fails its authentication (the
	// object was damaged or altered).
	CatDamaged = "encryption_damaged"
	// CatEncrypt: a new artifact could not be encrypted.
	CatEncrypt = "encryption"
)

// Error is a failure to encrypt or decrypt an artifact: the artifact, the
// recipients it is (or was to be) encrypted to, a category and what to do.
type Error struct {
	Category   string
	Key        string
	Recipients []string // names from the object's header, if it has them
	Hint       string
	Err        error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "artifact %s: ", e.Key)
	switch e.Category {
	case CatNoIdentity:
		b.WriteString("encrypted with age and no identity is configured to decrypt it")
	case CatWrongIdentity:
		b.WriteString("encrypted with age and no configured identity decrypts it")
	case CatIdentity:
		b.WriteString("encrypted with age and the identity cannot be read")
	case CatDamaged:
		b.WriteString("encrypted with age and fails to decrypt: damaged or altered")
	default:
		b.WriteString("age encryption failed")
	}
	if e.Err != nil {
		fmt.Fprintf(&b, " (%v)", e.Err)
	}
	fmt.Fprintf(&b, " [%s]", e.Category)
	if len(e.Recipients) > 0 {
		fmt.Fprintf(&b, "; it needs the identity of %s", strings.Join(e.Recipients, " or "))
	}
	if e.Hint != "" {
		b.WriteString("; " + e.Hint)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Category returns the category of an encryption failure in err's chain,
// "" for other errors.
func Category(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Category
	}
	return ""
}

// Recipient is a public key new artifacts are encrypted to.
type Recipient struct {
	// Name is the key as written in the configuration ("age1…").
	Name string
	r    age.Recipient
}

// ParseRecipient reads an age public key: "age1…" (X25519) or "age1pq1…"
// (post-quantum hybrid).
func ParseRecipient(s string) (Recipient, error) {
	s = strings.TrimSpace(s)
	var r age.Recipient
	var err error
	switch {
	case strings.HasPrefix(s, "AGE-SECRET-KEY-"):
		// Never echo it: it is a private key.
		return Recipient{}, errors.New("this is an identity (a private key), not a recipient; give its public key, which 'age-keygen -y KEYFILE' prints (age1…), and keep the private key away from btfu's configuration and data")
	case strings.HasPrefix(s, "age1pq1"):
		r, err = age.ParseHybridRecipient(s)
	case strings.HasPrefix(s, "age1"):
		r, err = age.ParseX25519Recipient(s)
	default:
		return Recipient{}, fmt.Errorf("%q is not an age public key; write it as age-keygen prints it (age1…)", abbrev(s))
	}
	if err != nil {
		return Recipient{}, fmt.Errorf("%q is not a valid age public key: %v", abbrev(s), err)
	}
	return Recipient{Name: s, r: r}, nil
}

// ParseRecipients reads a recipients file: one public key a line; empty
// lines and lines starting with '#' are skipped. Errors name the line.
func ParseRecipients(r io.Reader) ([]Recipient, error) {
	var out []Recipient
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 8<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rc, err := ParseRecipient(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		out = append(out, rc)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, errors.New("no recipient in it; put one age public key (age1…) a line")
	}
	return out, nil
}

// ParseIdentities reads identities (private keys, "AGE-SECRET-KEY-1…" as
// age-keygen writes them, comments allowed). Errors never quote the file.
func ParseIdentities(r io.Reader) ([]age.Identity, error) {
	ids, err := age.ParseIdentities(r)
	if err != nil {
		return nil, fmt.Errorf("not an age identity file (%v); it should hold the AGE-SECRET-KEY-1… line age-keygen wrote", err)
	}
	return ids, nil
}

// IdentityRecipient is the public key of an identity, "" when unknown.
func IdentityRecipient(id age.Identity) string {
	switch i := id.(type) {
	case *age.X25519Identity:
		return i.Recipient().String()
	case *age.HybridIdentity:
		return abbrev(i.Recipient().String())
	}
	return ""
}

// Options configure a Store.
type Options struct {
	// Recipients returns the keys a new object stored under key is
	// encrypted to; none stores it plain.
	Recipients func(key string) []Recipient
	// Identities returns the identities that decrypt, called for each
	// encrypted object read (so a machine that only writes never needs
	// them); nil or no identities means none is configured.
	Identities func() ([]age.Identity, error)
	// IdentityHint says how to give btfu an identity, for messages, e.g.
	// "set [storage] age_identity_file or age_identity in config.toml".
	IdentityHint string
}

// Store is the encrypting layer over another artifact.Store.
type Store struct {
	inner artifact.Store
	opts  atomic.Pointer[Options]
}

var _ artifact.Layer = (*Store)(nil)

// New wraps inner.
func New(inner artifact.Store, opts Options) *Store {
	s := &Store{inner: inner}
	s.SetOptions(opts)
	return s
}

// SetOptions replaces the options (a configuration reloaded): new objects
// go to the new recipients, the next encrypted object read uses the new
// identities.
// Reads and writes under way keep the options they started with.
func (s *Store) SetOptions(opts Options) {
	if opts.IdentityHint == "" {
		opts.IdentityHint = "configure the identity (private key) of one of these recipients"
	}
	s.opts.Store(&opts)
}

// Unwrap implements artifact.Layer.
func (s *Store) Unwrap() artifact.Store { return s.inner }

// String implements artifact.Store: where the store below is.
func (s *Store) String() string { return s.inner.String() }

func (s *Store) recipients(key string) []Recipient {
	if o := s.opts.Load(); o.Recipients != nil {
		return o.Recipients(key)
	}
	return nil
}

// Encode implements artifact.Layer: r encrypted to key's recipients, or r
// itself when key has none.
func (s *Store) Encode(key string, r io.Reader) (io.Reader, error) {
	rs := s.recipients(key)
	if len(rs) == 0 {
		return r, nil
	}
	var ars []age.Recipient
	for _, rc := range rs {
		ars = append(ars, named{rc})
	}
	enc, err := age.EncryptReader(r, ars...)
	if err != nil {
		return nil, &Error{Category: CatEncrypt, Key: key, Err: err,
			Hint: "check the recipients in config.toml (encrypt_to, encrypt_to_file): post-quantum (age1pq1…) and classic (age1…) keys cannot be mixed for one artifact"}
	}
	return enc, nil
}

// Put implements artifact.Store; the size is that of the stored bytes.
func (s *Store) Put(ctx context.Context, key string, r io.Reader) (int64, error) {
	if err := artifact.ValidateKey(key); err != nil {
		return 0, err
	}
	enc, err := s.Encode(key, r)
	if err != nil {
		return 0, err
	}
	return s.inner.Put(ctx, key, enc)
}

// Get implements artifact.Store: encrypted objects are decrypted, plain
// ones returned as stored.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	rc, err := s.inner.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	r, err := s.Decode(key, rc)
	if err != nil {
		rc.Close()
		return nil, err
	}
	return readCloser{r, rc}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// Decode implements artifact.Layer. It reads the age header (if any) at
// once, so a missing or wrong identity fails here, naming key and the
// recipients it needs; damage to the payload fails the read that meets it.
func (s *Store) Decode(key string, stored io.Reader) (io.Reader, error) {
	below := &errTracker{r: stored}
	br := bufio.NewReaderSize(below, maxHeader)
	head, err := br.Peek(len(Magic))
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if string(head) != Magic {
		return br, nil
	}
	// As much as there is, up to maxHeader; a read error is the store's
	// (bufio hands it out once).
	if head, err = br.Peek(maxHeader); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	names := Recipients(head)
	hint := s.opts.Load().IdentityHint
	ids, err := s.identities()
	if err != nil {
		return nil, &Error{Category: CatIdentity, Key: key, Recipients: names, Err: err, Hint: hint}
	}
	if len(ids) == 0 {
		return nil, &Error{Category: CatNoIdentity, Key: key, Recipients: names, Hint: hint}
	}
	r, err := age.Decrypt(br, ids...)
	if err != nil {
		var nm *age.NoIdentityMatchError
		if errors.As(err, &nm) {
			var have []string
			for _, id := range ids {
				if n := IdentityRecipient(id); n != "" {
					have = append(have, n)
				}
			}
			if len(have) > 0 {
				hint = "the configured identity is of " + strings.Join(have, ", ") + "; " + hint
			}
			return nil, &Error{Category: CatWrongIdentity, Key: key, Recipients: names, Hint: hint}
		}
		if below.caused(err) {
			return nil, err
		}
		return nil, &Error{Category: CatDamaged, Key: key, Recipients: names, Err: err,
			Hint: "the stored object differs from what btfu wrote; restore from another base backup or chain ('btfu verify' lists what is damaged)"}
	}
	return &payloadReader{r: r, below: below, key: key}, nil
}

// payloadReader names the artifact in decryption failures of the payload;
// failures of the store below pass through unchanged.
type payloadReader struct {
	r     io.Reader
	below *errTracker
	key   string
}

func (p *payloadReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if err != nil && err != io.EOF && !p.below.caused(err) {
		err = &Error{Category: CatDamaged, Key: p.key, Err: err,
			Hint: "the stored object differs from what btfu wrote, or was cut short; restore from another base backup or chain ('btfu verify' lists what is damaged)"}
	}
	return n, err
}

// errTracker remembers the error the store below returned.
type errTracker struct {
	r   io.Reader
	err error
}

func (t *errTracker) Read(b []byte) (int, error) {
	n, err := t.r.Read(b)
	if err != nil && err != io.EOF {
		t.err = err
	}
	return n, err
}

func (t *errTracker) caused(err error) bool { return t.err != nil && errors.Is(err, t.err) }

// identities reads the identities, at every encrypted object: a fixed or
// replaced identity file is taken without a restart (it is a few lines).
func (s *Store) identities() ([]age.Identity, error) {
	if load := s.opts.Load().Identities; load != nil {
		return load()
	}
	return nil, nil
}

// Stat implements artifact.Store (the stored size).
func (s *Store) Stat(ctx context.Context, key string) (artifact.Info, error) {
	return s.inner.Stat(ctx, key)
}

// List implements artifact.Store (stored sizes).
func (s *Store) List(ctx context.Context, prefix string) ([]artifact.Info, error) {
	return s.inner.List(ctx, prefix)
}

// Delete implements artifact.Store.
func (s *Store) Delete(ctx context.Context, key string) error { return s.inner.Delete(ctx, key) }

// Encrypted reports whether stored bytes start like an age file.
func Encrypted(head []byte) bool { return bytes.HasPrefix(head, []byte(Magic)) }

// Recipients returns the recipients an encrypted object's header names
// (from its start, as stored), nil when it names none.
func Recipients(head []byte) []string {
	if !Encrypted(head) {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(head[len(Magic):]), "\n") {
		if strings.HasPrefix(line, "---") {
			break
		}
		if f := strings.Fields(line); len(f) == 3 && f[0] == "->" && f[1] == hintType {
			out = append(out, f[2])
		}
	}
	return out
}

// named is an age.Recipient that also writes a stanza naming the key, so
// errors can say which identity an artifact needs. age ignores stanzas of
// unknown types when decrypting.
type named struct{ Recipient }

func (n named) Wrap(fileKey []byte) ([]*age.Stanza, error) {
	st, _, err := n.WrapWithLabels(fileKey)
	return st, err
}

func (n named) WrapWithLabels(fileKey []byte) ([]*age.Stanza, []string, error) {
	var st []*age.Stanza
	var labels []string
	var err error
	if l, ok := n.r.(age.RecipientWithLabels); ok {
		st, labels, err = l.WrapWithLabels(fileKey)
	} else {
		st, err = n.r.Wrap(fileKey)
	}
	if err != nil {
		return nil, nil, err
	}
	return append(st, &age.Stanza{Type: hintType, Args: []string{abbrev(n.Name)}}), labels, nil
}

// abbrev shortens long keys (post-quantum ones run to ~2000 characters)
// for headers and messages: start and end stay recognisable.
func abbrev(s string) string {
	if len(s) <= 100 {
		return s
	}
	return s[:40] + "..." + s[len(s)-20:]
}

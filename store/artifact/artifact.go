// Package artifact stores btfu's artifacts: pg_dump archives (possibly
// hundreds of GB) and compressed segment files. The metadata store records
// only their keys, sizes and checksums.
//
// Store has one implementation per backend: artifact/local (a directory
// tree) and artifact/s3 (any S3-compatible service). Both run the same
// contract suite, artifact/artifacttest.
//
// Objects are streamed in both directions; no implementation may buffer a
// whole object in memory or on disk. A transforming layer (encryption:
// artifact/agecrypt) is a Layer, a Store that wraps another Store: it
// rewrites the stream in Put and Get, and keeps the key space unchanged so
// that List and Delete pass through. Sizes it reports, and checksums
// PutHashed returns, are those of the stored bytes: Stored reads them for
// integrity checks that need no key, Decode turns them into content.
package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrNotFound is wrapped by Get and Stat when the key holds no object.
var ErrNotFound = errors.New("artifact not found")

// TempPrefix starts the names of in-flight temporary files; no key segment
// may start with it, so temporaries never collide with or appear as keys.
const TempPrefix = ".btfu-tmp"

// MaxKeyLen is the longest key accepted, in bytes (S3's limit).
const MaxKeyLen = 1024

// Info describes a stored object.
type Info struct {
	Key     string
	Size    int64
	ModTime time.Time
}

// Store holds artifacts under keys: relative slash-separated paths (see
// ValidateKey). Implementations are safe for concurrent use.
type Store interface {
	// Put stores everything read from r under key, atomically: a reader of
	// key sees either nothing/the old object or the whole new one. Returns
	// the stored size. When r fails or ctx ends, Put fails and key is left
	// as it was.
	Put(ctx context.Context, key string, r io.Reader) (int64, error)
	// Get opens the object for reading; ErrNotFound is wrapped when missing.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Stat describes the object; ErrNotFound is wrapped when missing.
	Stat(ctx context.Context, key string) (Info, error)
	// List returns the objects whose key starts with prefix, sorted by key.
	// prefix is a key prefix, not only a directory ("a/b" matches "a/bc").
	List(ctx context.Context, prefix string) ([]Info, error)
	// Delete removes the object; deleting a missing key is not an error.
	Delete(ctx context.Context, key string) error
	// String says where the store is, for messages, e.g.
	// "local:/var/lib/btfu/data" or "s3://bucket/prefix"; never credentials.
	String() string
}

// ValidateKey reports whether key is acceptable: a non-empty relative
// slash-separated UTF-8 path of at most MaxKeyLen bytes, without leading or
// trailing '/', empty, "." or ".." segments, backslashes or NUL bytes, and
// no segment starting with TempPrefix.
func ValidateKey(key string) error {
	switch {
	case key == "":
		return errors.New("invalid key: empty")
	case len(key) > MaxKeyLen:
		return fmt.Errorf("invalid key %.40q...: longer than %d bytes", key, MaxKeyLen)
	case !utf8.ValidString(key):
		return fmt.Errorf("invalid key %q: not UTF-8", key)
	case strings.ContainsAny(key, "\\\x00"):
		return fmt.Errorf("invalid key %q: contains a backslash or NUL", key)
	}
	for _, seg := range strings.Split(key, "/") {
		switch {
		case seg == "":
			return fmt.Errorf("invalid key %q: leading, trailing or double '/'", key)
		case seg == "." || seg == "..":
			return fmt.Errorf("invalid key %q: contains a %q segment", key, seg)
		case strings.HasPrefix(seg, TempPrefix):
			return fmt.Errorf("invalid key %q: segment starts with reserved %q", key, TempPrefix)
		}
	}
	return nil
}

// ValidatePrefix reports whether prefix is acceptable for List: empty, or
// the beginning of some valid key (so "a/", "a/b" and "a/." are fine but
// "/a", "a//" and "../" are not).
func ValidatePrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if err := ValidateKey(prefix + "x"); err != nil {
		return fmt.Errorf("invalid prefix %q: %w", prefix, err)
	}
	return nil
}

// Layer is a transforming Store (encryption): it rewrites the stream in
// Put and Get and passes keys, Stat, List and Delete through to the store
// below, which holds the stored bytes. Checksums and sizes recorded for an
// artifact are those of the stored bytes, so integrity can be checked
// below the layer (without its keys) and content through it.
type Layer interface {
	Store
	// Unwrap returns the store below.
	Unwrap() Store
	// Encode turns the bytes given to Put for key into the bytes to store,
	// streaming.
	Encode(key string, r io.Reader) (io.Reader, error)
	// Decode turns bytes stored under key, as read from Unwrap(), into the
	// bytes Get returns, streaming.
	Decode(key string, stored io.Reader) (io.Reader, error)
}

// Stored returns the store that holds the stored bytes: s below every
// Layer. Reading from it gives the bytes the recorded checksums cover.
func Stored(s Store) Store {
	for {
		l, ok := s.(Layer)
		if !ok {
			return s
		}
		s = l.Unwrap()
	}
}

// Decode turns stored bytes of key, as read from Stored(s), into what
// s.Get(key) returns, applying every Layer's Decode from the bottom up.
func Decode(s Store, key string, stored io.Reader) (io.Reader, error) {
	l, ok := s.(Layer)
	if !ok {
		return stored, nil
	}
	r, err := Decode(l.Unwrap(), key, stored)
	if err != nil {
		return nil, err
	}
	return l.Decode(key, r)
}

// PutHashed is s.Put that also returns the SHA-256 (hex) of the bytes
// stored (below every Layer), computed on the way through without
// buffering.
func PutHashed(ctx context.Context, s Store, key string, r io.Reader) (size int64, sha256hex string, err error) {
	if l, ok := s.(Layer); ok {
		if err := ValidateKey(key); err != nil {
			return 0, "", err
		}
		enc, err := l.Encode(key, r)
		if err != nil {
			return 0, "", err
		}
		return PutHashed(ctx, l.Unwrap(), key, enc)
	}
	h := sha256.New()
	size, err = s.Put(ctx, key, io.TeeReader(r, h))
	if err != nil {
		return 0, "", err
	}
	return size, hex.EncodeToString(h.Sum(nil)), nil
}

package stream

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzDecodeMessage: whatever the bytes, DecodeMessage returns a message
// or an error, never panics; a message it accepts encodes back to exactly
// the same bytes (nothing is skipped or guessed). `go test` runs the
// seeds: every hand-built sample and the real messages of the server's
// workload (serverSteps and a streamed transaction); `go test -fuzz
// FuzzDecodeMessage ./stream` explores from them.
func FuzzDecodeMessage(f *testing.F) {
	for _, s := range samples {
		f.Add(encode(s.msg, s.inStream), s.inStream)
	}
	db := source.CreateDB(f)
	source.Exec(f, db, serverSchema)
	slot := newRawSlot(f, source, db, false, protoOptions(source)...)
	for _, step := range serverSteps {
		if source.Major >= step.minMajor && (step.maxMajor == 0 || source.Major <= step.maxMajor) {
			source.Exec(f, db, step.sql)
		}
	}
	source.Exec(f, db, `BEGIN; INSERT INTO t SELECT g, repeat('p', 100) FROM generate_series(100, 1500) g;
		SAVEPOINT s; INSERT INTO dropped DEFAULT VALUES; ROLLBACK TO s; INSERT INTO empty DEFAULT VALUES; COMMIT`)
	seen := map[string]bool{}
	for _, d := range decodeAll(f, slot.mustChanges()) {
		// One of each shape is enough: the streamed rows repeat.
		key := string(d.raw[0]) + d.line[:min(len(d.line), 12)]
		if !seen[key] {
			seen[key] = true
			f.Add(d.raw, d.inStream)
		}
	}

	f.Fuzz(func(t *testing.T, data []byte, inStream bool) {
		in := bytes.Clone(data)
		m, err := DecodeMessage(data, inStream)
		if !bytes.Equal(in, data) {
			t.Fatal("DecodeMessage changed its input")
		}
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) && !strings.Contains(err.Error(), "unknown message type") {
				t.Fatalf("error %v is neither a DecodeError nor an unknown type", err)
			}
			if de != nil && (de.Len != len(data) || de.Offset < 0 || de.Offset > len(data) || len(data) > 0 && de.Type != data[0]) {
				t.Fatalf("error %+v for %d bytes", de, len(data))
			}
			return
		}
		if m.Type() != data[0] {
			t.Fatalf("decoded a %c message from a %c", m.Type(), data[0])
		}
		if got := encode(m, inStream); !bytes.Equal(got, data) {
			t.Fatalf("% x decoded as %#v encodes back as % x", data, m, got)
		}
		// What the receiver does with rows must not fail on any tuple
		// but binary ones.
		for _, tup := range tuplesOf(m) {
			if _, err := values(tup); err != nil && !hasBinary(tup) {
				t.Fatalf("values(%v): %v", tup, err)
			}
		}
	})
}

func tuplesOf(m Message) []Tuple {
	switch m := m.(type) {
	case *InsertMsg:
		return []Tuple{m.New}
	case *UpdateMsg:
		return []Tuple{m.Old, m.New}
	case *DeleteMsg:
		return []Tuple{m.Old}
	}
	return nil
}

func hasBinary(t Tuple) bool {
	for _, d := range t {
		if d.Kind == DatumBinary {
			return true
		}
	}
	return false
}

package notify

import (
	"errors"
	"strings"
	"testing"
)

// A hint reads an HTTP status from the answer, never from digits that
// happen to be in the message: a refused connection to port 40389 is not
// a 403.
func TestHintReadsStatusCodesNotDigits(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{errors.New("POST http://127.0.0.1:40389: dial tcp 127.0.0.1:40389: connect: connection refused"), "nothing listens there"},
		{errors.New("POST http://127.0.0.1:50404: dial tcp 127.0.0.1:50404: i/o timeout"), "no answer in time"},
		{permanent{&statusError{Code: 403, msg: "POST http://h: 403 Forbidden: no"}}, "refused the request"},
		{permanent{&statusError{Code: 404, msg: "POST http://h: 404 Not Found: gone"}}, "no such endpoint"},
		{&statusError{Code: 502, msg: "POST http://h:4030: 502 Bad Gateway: x"}, "the endpoint failed (5xx)"},
	} {
		if got := Hint(c.err); !strings.Contains(got, c.want) {
			t.Errorf("Hint(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

package s3test

import (
	"fmt"
	"os"
	"testing"
)

// Main starts a server into *srv, runs the package's tests, and stops it
// again. Use it from TestMain:
//
//	var srv *s3test.Server
//	func TestMain(m *testing.M) { os.Exit(s3test.Main(m, &srv)) }
//
// A server that cannot start (versitygw missing, say) fails the whole
// package: tests never skip because a server is missing.
func Main(m *testing.M, srv **Server) (code int) {
	s, err := Start()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer func() {
		_ = s.Stop()
		if r := recover(); r != nil {
			panic(r)
		}
	}()
	*srv = s
	return m.Run()
}

package pgtest

import (
	"fmt"
	"os"
	"testing"
)

// Main starts one cluster per pointer in clusters (typically a source and a
// target), runs the package's tests, and stops them again. Use it from
// TestMain:
//
//	var source, target *pgtest.Cluster
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &source, &target)) }
//
// A cluster that cannot start fails the whole package: tests never skip
// because a server is missing.
func Main(m *testing.M, clusters ...**Cluster) (code int) {
	started := make([]*Cluster, 0, len(clusters))
	defer func() {
		for _, c := range started {
			_ = c.Stop()
		}
		if r := recover(); r != nil {
			panic(r)
		}
	}()
	for _, dst := range clusters {
		c, err := Start(Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		started = append(started, c)
		*dst = c
	}
	return m.Run()
}

// Package corpus runs PostgreSQL's own regression suite (src/test/regress,
// fetched and built by scripts/corpus-setup.sh) against a plain cluster and
// against a cluster whose regression database btfu protects, and compares
// the two runs file by file: ERROR lines, exit codes and wall time ("do no
// harm", issue 12). It can also restore what btfu stored, at the end and
// at an LSN in the middle of the schedule, and compare every table's
// contents and the objects with the source (issue 13).
//
// The suite runs the way pg_regress runs it: psql -X -a -q per test file,
// serially in parallel_schedule order, in a database created from
// template0 with pg_regress's settings and environment.
//
// The test is TestCorpus; `make test-corpus` sets it up and runs it (see
// corpus_test.go for the environment knobs).
package corpus

// Package corpus runs PostgreSQL's own regression suite (src/test/regress,
// fetched and built by scripts/corpus-setup.sh) against a plain cluster and
// against clusters whose regression database btfu protects (its default
// configuration, and tables_without_key = "replica_identity_full"), and
// compares the runs file by file: ERROR lines, exit codes and wall time
// ("do no harm", issue 12). It then restores what btfu stored (the latest
// state, an LSN in the middle of the schedule, and the latest state from
// the first base backup) and compares every table, object and sequence
// with the source (issue 13): each table equal, LEFT OUT for a documented
// reason, or an inheritance child whose columns pg_dump reorders; anything
// else fails (compare.go).
//
// The suite runs the way pg_regress runs it: psql -X -a -q per test file,
// serially in parallel_schedule order, in a database created from
// template0 with pg_regress's settings and environment.
//
// The test is TestCorpus; `make test-corpus` sets it up and runs it (see
// corpus_test.go for the environment knobs).
package corpus

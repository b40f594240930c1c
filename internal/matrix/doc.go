// Package matrix holds the PostgreSQL version matrix (`make test-matrix`,
// scripts/matrix.sh): its tests run btfu against one server major per run,
// named by $BTFU_TEST_PG_BIN, with the PostgreSQL client installed on the
// machine (pg_dump, pg_restore):
//
//   - TestSourceCapture: the server as a source; registration, streaming,
//     a workload (updates, deletes, a table without a primary key, a
//     transaction larger than logical_decoding_work_mem) stored in segments.
//   - TestRestoreAsTarget: a capture of a source of the client's major
//     restored into the server, every table compared.
//   - TestFullCycle: base backup, stream and restore to an LSN on the server
//     when the installed pg_dump can dump it; otherwise the refusal that
//     names the missing client.
//
// The tests skip unless $BTFU_MATRIX is set, so `make test` stays fast; with
// it set nothing skips. Each test appends its outcome to
// $BTFU_MATRIX_RESULTS (key=value lines) for the script's table.
package matrix

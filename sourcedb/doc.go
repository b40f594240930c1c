// Package sourcedb is btfu's side of the source database: connections
// (connect.go: normal and replication, errors that name host and port and
// never the password), the tables and the rules that say which of them the
// publication holds (tables.go), the publication itself (publication.go:
// reading it, creating it or bringing it to the plan), registration, which
// creates or adopts what the probe planned (register.go: the publication,
// REPLICA IDENTITY FULL where the config asks, the DDL-capture objects),
// the DDL-capture objects themselves (ddlcapture.go), the periodic upkeep of the
// publication's table list (newtables.go), and replication slots
// (slot.go: creation with an exported snapshot, the WAL a slot retains,
// its active backend, ending btfu's own walsender, dropping). Package
// probe checks and plans; this package acts, and only as the plan
// announced (DESIGN 6).
package sourcedb

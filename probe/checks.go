package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/internal/human"
	"github.com/btfu/btfu/sourcedb"

	"github.com/btfu/btfu/pgbin"
)

// MinServerMajor is the oldest PostgreSQL btfu supports.
const MinServerMajor = 13

func (p *prober) checkServer() {
	var version string
	var num int
	var standby bool
	var user, db string
	err := p.conn.QueryRow(p.ctx, `SELECT current_setting('server_version'), current_setting('server_version_num')::int,
		pg_is_in_recovery(), current_user, current_database(),
		coalesce((SELECT rolsuper FROM pg_roles WHERE rolname = current_user), false),
		coalesce((SELECT rolreplication FROM pg_roles WHERE rolname = current_user), false),
		pg_database_size(current_database())`).Scan(&version, &num, &standby, &user, &db, &p.superuser, &p.replication, &p.dbSize)
	if err != nil {
		p.r.add(Check{ID: "server_version", Status: Fail, Finding: fmt.Sprintf("could not read the server version: %v", err)})
		return
	}
	p.r.ServerVersion, p.r.ServerMajor = version, num/10000
	settings := map[string]bool{}
	rows, err := p.conn.Query(p.ctx, `SELECT name FROM pg_settings WHERE name LIKE 'rds.%' OR name LIKE 'cloudsql.%' OR name LIKE 'azure.%' OR name LIKE 'neon.%'`)
	if err == nil {
		names, _ := pgx.CollectRows(rows, pgx.RowTo[string])
		for _, n := range names {
			settings[n] = true
		}
	}
	if num >= 130000 {
		var aurora bool
		_ = p.conn.QueryRow(p.ctx, `SELECT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'aurora_version')`).Scan(&aurora)
		settings["aurora_version"] = aurora
	}
	host := ""
	if cfg, err := sourcedb.ConnConfig(p.src); err == nil {
		host = cfg.Host
	}
	p.r.Provider = detectProvider(host, settings)
	p.r.Plan.Slot = p.src.Slot
	p.r.Plan.Publication = p.src.Publication
	switch {
	case p.r.ServerMajor < MinServerMajor:
		p.r.add(Check{ID: "server_version", Status: Fail, Finding: fmt.Sprintf("PostgreSQL %s is older than %d, the oldest btfu supports", version, MinServerMajor),
			Fix: "upgrade the server to PostgreSQL 13 or newer"})
	case p.r.ServerMajor == 13:
		p.r.Plan.ProtocolVersion = 1
		p.r.add(Check{ID: "server_version", Status: OK, Finding: fmt.Sprintf("PostgreSQL %s: pgoutput protocol 1 (large transactions are decoded at commit)", version)})
	default:
		p.r.Plan.ProtocolVersion, p.r.Plan.Streaming = 2, true
		p.r.add(Check{ID: "server_version", Status: OK, Finding: fmt.Sprintf("PostgreSQL %s: pgoutput protocol 2 with streaming of large transactions", version)})
	}
	switch {
	case standby && p.r.ServerMajor < 16:
		p.r.add(Check{ID: "standby", Status: Fail, Finding: "the server is a standby; logical decoding on a standby needs PostgreSQL 16+",
			Fix: "point the dsn at the primary"})
	case standby:
		p.r.add(Check{ID: "standby", Status: Warn, Finding: "the server is a standby: its slots can be invalidated by the primary's vacuum, and failover loses them",
			Fix: "point the dsn at the primary, or enable hot_standby_feedback on this standby"})
	default:
		p.r.add(Check{ID: "standby", Status: OK, Finding: "the server is a primary"})
	}
}

var sslmodeRE = regexp.MustCompile(`(?i)\bsslmode=([a-z-]+)`)

func (p *prober) checkTLS() {
	var ssl bool
	var version *string
	err := p.conn.QueryRow(p.ctx, `SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl, &version)
	if err != nil {
		p.queryErr("tls", err)
		return
	}
	mode := "prefer"
	if m := sslmodeRE.FindStringSubmatch(p.src.DSN); m != nil {
		mode = strings.ToLower(m[1])
	}
	host := ""
	if cfg, err := sourcedb.ConnConfig(p.src); err == nil {
		host = cfg.Host
	}
	loopback := host == "localhost" || strings.HasPrefix(host, "/")
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		loopback = true
	}
	switch {
	case !ssl && loopback:
		p.r.add(Check{ID: "tls", Status: Info, Finding: "no TLS (loopback connection)"})
	case !ssl:
		p.r.add(Check{ID: "tls", Status: Warn, Finding: "the connection is not encrypted: passwords and data cross the network in clear",
			Fix: "use sslmode=verify-full (with sslrootcert= the provider's CA) in the dsn"})
	case mode == "verify-full":
		p.r.add(Check{ID: "tls", Status: OK, Finding: fmt.Sprintf("TLS (%s), server certificate and host name verified", deref(version))})
	case mode == "verify-ca":
		p.r.add(Check{ID: "tls", Status: OK, Finding: fmt.Sprintf("TLS (%s), server certificate verified (host name not checked)", deref(version)),
			Fix: "sslmode=verify-full also checks the host name"})
	default:
		p.r.add(Check{ID: "tls", Status: Warn, Finding: fmt.Sprintf("TLS (%s) but the server certificate is not verified (sslmode=%s)", deref(version), mode),
			Fix: "use sslmode=verify-full with sslrootcert= the provider's CA certificate"})
	}
}

func deref(s *string) string {
	if s == nil {
		return "unknown version"
	}
	return *s
}

func (p *prober) checkWALLevel() {
	var level string
	if err := p.conn.QueryRow(p.ctx, `SELECT current_setting('wal_level')`).Scan(&level); err != nil {
		p.queryErr("wal_level", err)
		return
	}
	if level == "logical" {
		p.r.add(Check{ID: "wal_level", Status: OK, Finding: "wal_level = logical"})
		return
	}
	p.r.add(Check{ID: "wal_level", Status: Fail, Finding: fmt.Sprintf("wal_level = %s; logical decoding needs wal_level = logical", level),
		Fix: walLevelFix(p.r.Provider)})
}

func (p *prober) checkRole() {
	var user string
	var rdsRepl bool
	_ = p.conn.QueryRow(p.ctx, `SELECT current_user, EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'rds_replication' AND pg_has_role(current_user, r.oid, 'MEMBER'))`).Scan(&user, &rdsRepl)
	switch {
	case p.superuser:
		p.r.add(Check{ID: "role", Status: OK, Finding: fmt.Sprintf("role %s is a superuser", user)})
	case p.replication || rdsRepl:
		p.r.add(Check{ID: "role", Status: OK, Finding: fmt.Sprintf("role %s has the REPLICATION attribute (not superuser: explicit table list, DDL derived from relation changes)", user)})
	default:
		p.r.add(Check{ID: "role", Status: Fail, Finding: fmt.Sprintf("role %s may not replicate (neither REPLICATION nor superuser)", user),
			Fix: replicationGrantFix(p.r.Provider, user)})
	}
}

// pooledBehaviour is set when the replication connection shows a pooler.
const poolerSyntaxHint = "IDENTIFY_SYSTEM was rejected as a syntax error: a connection pooler stripped the replication parameter"

func (p *prober) checkReplicationConnection() {
	ctx, cancel := context.WithTimeout(p.ctx, 30*time.Second)
	defer cancel()
	rc, err := sourcedb.ConnectReplication(ctx, p.src)
	if err != nil {
		var ce *sourcedb.ConnError
		var pgErr *pgconn.PgError
		fix := replicationGrantFix(p.r.Provider, p.userName())
		if errors.As(err, &pgErr) && strings.Contains(pgErr.Message, "pg_hba.conf") {
			fix = "allow replication connections for this role in pg_hba.conf (a 'host replication <role> <address> scram-sha-256' line) or the provider's settings"
		}
		finding := err.Error()
		if errors.As(err, &ce) {
			finding = "a replication connection was refused: " + ce.Cause
		}
		p.r.add(Check{ID: "replication", Status: Fail, Finding: finding, Fix: fix})
		return
	}
	defer rc.Close(context.WithoutCancel(p.ctx))
	sys, err := pglogrepl.IdentifySystem(ctx, rc)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "42601" {
			p.r.add(Check{ID: "replication", Status: Fail, Finding: poolerSyntaxHint, Fix: directEndpointFix(p.r.Provider)})
			return
		}
		p.r.add(Check{ID: "replication", Status: Fail, Finding: fmt.Sprintf("IDENTIFY_SYSTEM failed: %v", err), Fix: replicationGrantFix(p.r.Provider, p.userName())})
		return
	}
	p.r.SystemIdentifier = sys.SystemID
	p.r.add(Check{ID: "replication", Status: OK, Finding: fmt.Sprintf("replication connection works (system %s, timeline %d, WAL at %s)", sys.SystemID, sys.Timeline, sys.XLogPos)})
}

func (p *prober) userName() string {
	if cfg, err := sourcedb.ConnConfig(p.src); err == nil {
		return cfg.User
	}
	return "<role>"
}

func (p *prober) checkPooler() {
	cfg, err := sourcedb.ConnConfig(p.src)
	if err != nil {
		return
	}
	if name := poolerByName(cfg.Host, cfg.Port); name != "" {
		p.r.add(Check{ID: "pooler", Status: Fail, Finding: fmt.Sprintf("%s:%d looks like %s, which cannot carry replication connections", cfg.Host, cfg.Port, name),
			Fix: directEndpointFix(p.r.Provider)})
		return
	}
	if c, ok := p.r.Check("replication"); ok && c.Finding == poolerSyntaxHint {
		p.r.add(Check{ID: "pooler", Status: Fail, Finding: "a connection pooler sits in front of the server (replication connections are rewritten)",
			Fix: directEndpointFix(p.r.Provider)})
		return
	}
	p.r.add(Check{ID: "pooler", Status: OK, Finding: "direct connection (no pooler detected)"})
}

func (p *prober) checkSlotsAndSenders() {
	var maxSlots, usedSlots, maxSenders, usedSenders int
	var ours bool
	err := p.conn.QueryRow(p.ctx, `SELECT current_setting('max_replication_slots')::int, (SELECT count(*) FROM pg_replication_slots)::int,
		current_setting('max_wal_senders')::int, (SELECT count(*) FROM pg_stat_replication)::int,
		EXISTS (SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)`, p.src.Slot).Scan(&maxSlots, &usedSlots, &maxSenders, &usedSenders, &ours)
	if err != nil {
		p.queryErr("slots", err)
		return
	}
	// btfu holds its main slot and, during later base backups, a second
	// temporary one; each needs a WAL sender while in use.
	needSlots := 2
	if ours {
		needSlots = 1
	}
	freeSlots, freeSenders := maxSlots-usedSlots, maxSenders-usedSenders
	fix := "raise max_replication_slots / max_wal_senders (restart needed), or drop unused slots"
	switch {
	case freeSlots < 1 || freeSenders < 1:
		p.r.add(Check{ID: "slots", Status: Fail, Finding: fmt.Sprintf("no room: %d of %d replication slots and %d of %d WAL senders in use", usedSlots, maxSlots, usedSenders, maxSenders), Fix: fix})
	case freeSlots < needSlots || freeSenders < 2:
		p.r.add(Check{ID: "slots", Status: Warn, Finding: fmt.Sprintf("tight: %d free replication slots and %d free WAL senders; later base backups need a second, temporary slot", freeSlots, freeSenders), Fix: fix})
	default:
		p.r.add(Check{ID: "slots", Status: OK, Finding: fmt.Sprintf("%d of %d replication slots and %d of %d WAL senders free", freeSlots, maxSlots, freeSenders, maxSenders)})
	}
}

func (p *prober) checkTables() {
	tables, err := sourcedb.ListTables(p.ctx, p.conn)
	if err != nil {
		p.r.add(Check{ID: "tables", Status: Fail, Finding: fmt.Sprintf("could not list tables: %v", err)})
		return
	}
	p.r.Tables = tables
	sourcedb.Decide(p.src, p.r.Tables)
	p.reportTables()
}

func (p *prober) reportTables() {
	var total, rowsTotal int64
	var undecided, full, unlogged, partitioned, generated, excluded []string
	for _, t := range p.r.Tables {
		total += t.Bytes
		rowsTotal += t.RowEstimate
		name := t.QualifiedName()
		switch t.Decision {
		case "undecided":
			undecided = append(undecided, name+" (replica identity "+t.ReplicaIdentity+", no primary key)")
		case "set_full":
			full = append(full, name)
		case "not_logged":
			unlogged = append(unlogged, name)
		case "exclude":
			excluded = append(excluded, name)
		}
		if t.Kind == "partitioned" {
			partitioned = append(partitioned, name)
		}
		if t.Generated {
			generated = append(generated, name)
		}
	}
	bySize := append([]sourcedb.Table(nil), p.r.Tables...)
	sort.SliceStable(bySize, func(i, j int) bool { return bySize[i].Bytes > bySize[j].Bytes })
	var details []string
	for i, t := range bySize {
		if i == 15 {
			details = append(details, fmt.Sprintf("… and %d more", len(bySize)-15))
			break
		}
		details = append(details, fmt.Sprintf("%s  %s  ~%d rows", t.QualifiedName(), human.Bytes(t.Bytes), t.RowEstimate))
	}
	p.r.add(Check{ID: "tables", Status: Info, Finding: fmt.Sprintf("%d tables, %s, ~%d rows (database %s)", len(p.r.Tables), human.Bytes(total), rowsTotal, human.Bytes(p.dbSize)), Details: details})

	switch {
	case len(undecided) > 0:
		if len(full) > 0 {
			p.r.add(Check{ID: "replica_identity_full", Status: Info, Finding: fmt.Sprintf("%d table(s) will be set to REPLICA IDENTITY FULL as configured (more WAL per UPDATE/DELETE)", len(full)), Details: full})
		}
		p.r.add(Check{ID: "replica_identity", Status: Warn,
			Finding: fmt.Sprintf("%d table(s) have no usable replica identity: LEFT OUT, not backed up (publishing them would make the application's UPDATE and DELETE on them fail)", len(undecided)),
			Details: undecided,
			Fix:     "add a primary key, or let btfu run ALTER TABLE … REPLICA IDENTITY FULL: replica_identity_full = [\"schema.table\"] for some, tables_without_key = \"replica_identity_full\" for all; exclude_tables = [\"schema.table\"] silences this"})
	case len(full) > 0:
		p.r.add(Check{ID: "replica_identity", Status: Info, Finding: fmt.Sprintf("%d table(s) will be set to REPLICA IDENTITY FULL as configured (more WAL per UPDATE/DELETE)", len(full)), Details: full})
	default:
		p.r.add(Check{ID: "replica_identity", Status: OK, Finding: "every published table has a usable replica identity"})
	}
	if len(excluded) > 0 {
		p.r.add(Check{ID: "excluded", Status: Info, Finding: fmt.Sprintf("%d table(s) excluded by the config: not protected", len(excluded)), Details: excluded})
	}
	if len(unlogged) > 0 {
		p.r.add(Check{ID: "unlogged", Status: Warn, Finding: fmt.Sprintf("%d unlogged table(s): not in the WAL, so changes after the base backup are not protected", len(unlogged)), Details: unlogged,
			Fix: "ALTER TABLE … SET LOGGED if they matter"})
	} else {
		p.r.add(Check{ID: "unlogged", Status: OK, Finding: "no unlogged tables"})
	}
	if len(partitioned) > 0 {
		// Published through their partitions (publish_via_partition_root
		// off): with it on, PostgreSQL does not decode a TRUNCATE of one
		// partition, and a restore would keep rows the source removed.
		p.r.add(Check{ID: "partitioned", Status: Info, Finding: fmt.Sprintf("%d partitioned table(s): changes are decoded under their partitions' names (publish_via_partition_root off, so a TRUNCATE of one partition is decoded too)", len(partitioned)), Details: partitioned})
	}
	if len(generated) > 0 {
		p.r.add(Check{ID: "generated_columns", Status: Info, Finding: fmt.Sprintf("%d table(s) with generated columns: not decoded, recomputed by the restore", len(generated)), Details: generated})
	}
}

// tryRolledBack runs statements in a transaction that is always rolled
// back, reporting whether they all succeeded.
func (p *prober) tryRolledBack(stmts ...string) error {
	tx, err := p.conn.Begin(p.ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(p.ctx))
	for _, s := range stmts {
		if _, err := tx.Exec(p.ctx, s); err != nil {
			return err
		}
	}
	return nil
}

func (p *prober) checkPublication() {
	pl := &p.r.Plan
	var publish, excluded, setFull, undecided, notOwned []string
	published := map[string]bool{}
	for _, t := range p.r.Tables {
		published[t.QualifiedName()] = t.Decision == "publish" || t.Decision == "set_full"
	}
	for _, t := range p.r.Tables {
		switch t.Decision {
		case "publish", "set_full":
			// A partition of a published root is published through it.
			if t.Kind != "partition" || !(pl.ViaPartitionRoot || published[t.Root]) {
				publish = append(publish, t.QualifiedName())
				if !t.Owned && !p.superuser {
					notOwned = append(notOwned, t.QualifiedName())
				}
			}
			if t.Decision == "set_full" {
				setFull = append(setFull, t.QualifiedName())
			}
		case "exclude":
			excluded = append(excluded, t.QualifiedName())
		case "undecided":
			undecided = append(undecided, t.QualifiedName())
		}
	}
	pl.Tables, pl.Excluded, pl.SetReplicaFull, pl.Undecided = publish, excluded, setFull, undecided
	// Always an explicit list (FOR TABLE ONLY …): FOR ALL TABLES and FOR
	// TABLES IN SCHEMA publish every new table at once, with or without a
	// usable replica identity, and a new table without one would then make
	// the application's UPDATE and DELETE on it fail (DESIGN 5, 6.2).
	// btfu keeps the list current itself.
	pl.PublicationForm = sourcedb.FormTableList
	var details []string
	details = append(details, "new tables with a primary key or replica identity join the publication: at once, in the creating transaction, where DDL capture is installed; else within a minute, covered from the LSN btfu records")
	if p.src.TablesWithoutKey == config.KeylessFull {
		details = append(details, "new tables without one are set to REPLICA IDENTITY FULL and join it (tables_without_key = \"replica_identity_full\")")
	} else {
		details = append(details, "new tables without one are left out and reported (tables_without_key = \"leave_out\")")
	}
	switch {
	case pl.PublicationForm == sourcedb.FormTableList && len(notOwned) > 0:
		p.r.add(Check{ID: "publication", Status: Fail, Finding: fmt.Sprintf("the role must own a table to publish it with an explicit list; it does not own %d", len(notOwned)),
			Details: notOwned, Fix: "run btfu as the tables' owner or a superuser, or exclude those tables"})
	case len(publish) == 0 && len(p.r.Tables) > 0:
		p.r.add(Check{ID: "publication", Status: Fail, Finding: "no table would be published", Fix: "check include_tables and exclude_tables"})
	default:
		p.r.add(Check{ID: "publication", Status: OK, Finding: fmt.Sprintf("publication %s %s (%d tables)", pl.Publication, sourcedb.DescribeForm(pl), len(publish)), Details: details})
	}
	p.checkExistingPublication()
}

func shortErr(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	return err.Error()
}

func (p *prober) checkExistingPublication() {
	ep, err := sourcedb.ReadPublication(p.ctx, p.conn, p.src.Publication)
	if err != nil {
		p.queryErr("publication_existing", err)
		return
	}
	if ep == nil {
		p.r.add(Check{ID: "publication_existing", Status: Info, Finding: fmt.Sprintf("publication %s does not exist yet; registration creates it", p.src.Publication)})
		return
	}
	switch {
	case ep.AllTables || ep.Schemas > 0:
		p.r.add(Check{ID: "publication_existing", Status: Warn, Finding: fmt.Sprintf("publication %s exists %s: it publishes every new table, with or without a usable replica identity, and a table without one makes the application's UPDATE and DELETE fail; registration replaces it by the explicit list in one transaction (no gap in coverage)", p.src.Publication, map[bool]string{true: "FOR ALL TABLES", false: "FOR TABLES IN SCHEMA"}[ep.AllTables])})
	default:
		if ep.ViaRoot {
			p.r.add(Check{ID: "publication_via_root", Status: Warn, Finding: fmt.Sprintf("publication %s has publish_via_partition_root on: PostgreSQL does not decode a TRUNCATE of a single partition then, so a restore would keep rows the source removed; registration turns it off (changes are then decoded under the partitions' names, which replay takes as well)", p.src.Publication)})
		}
		p.r.add(Check{ID: "publication_existing", Status: OK, Finding: fmt.Sprintf("publication %s exists; it will be adopted and its table list kept to the plan", p.src.Publication)})
	}
}

func (p *prober) checkDDLCapture() {
	if p.r.ServerMajor > 0 && p.r.ServerMajor < 14 {
		p.r.add(Check{ID: "ddl_capture", Status: Info,
			Finding: fmt.Sprintf("PostgreSQL %d's pgoutput carries no logical messages: schema changes are derived from relation messages and periodic schema snapshots; nothing is installed for DDL capture", p.r.ServerMajor)})
		return
	}
	var exists bool
	_ = p.conn.QueryRow(p.ctx, `SELECT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = $1)`, sourcedb.DDLTrigger).Scan(&exists)
	objects := sourcedb.DDLObjects()
	if exists {
		other, err := sourcedb.OtherCapturePublication(p.ctx, p.conn, p.src)
		if err != nil {
			p.queryErr("ddl_capture", err)
			return
		}
		if other != "" {
			msg := sourcedb.CaptureServesOtherErr(p.conn.Config().Database, other, p.src.Publication).Error()
			finding, fix, _ := strings.Cut(strings.TrimPrefix(msg, sourcedb.ErrCaptureServesOther.Error()+": "), " Fix: ")
			p.r.add(Check{ID: "ddl_capture", Status: Fail, Finding: finding, Fix: fix})
			return
		}
		p.r.Plan.DDLCapture, p.r.Plan.DDLObjects = true, objects
		p.r.add(Check{ID: "ddl_capture", Status: OK, Finding: "DDL capture is installed (event trigger " + sourcedb.DDLTrigger + ")"})
		return
	}
	if err := p.tryRolledBack(sourcedb.DDLStatements(p.src)...); err != nil {
		p.r.add(Check{ID: "ddl_capture", Status: Info,
			Finding: "this role may not create event triggers (" + shortErr(err) + "): schema changes are derived from relation messages and periodic schema snapshots",
			Fix:     "run registration once as a superuser to install DDL capture, if you want DDL replayed in place"})
		return
	}
	p.r.Plan.DDLCapture, p.r.Plan.DDLObjects = true, objects
	p.r.add(Check{ID: "ddl_capture", Status: OK, Finding: "DDL capture possible: registration creates " + strings.Join(objects, ", ")})
}

func (p *prober) checkExistingSlots() {
	rows, err := p.conn.Query(p.ctx, `SELECT slot_name, coalesce(plugin, ''), slot_type, coalesce(database, ''), active, coalesce(wal_status, ''),
		CASE WHEN pg_is_in_recovery() OR restart_lsn IS NULL THEN 0 ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint END
		FROM pg_replication_slots ORDER BY slot_name`)
	if err != nil {
		p.queryErr("existing_slots", err)
		return
	}
	defer rows.Close()
	var others []string
	worst := OK
	var fix string
	for rows.Next() {
		var name, plugin, typ, db, walStatus string
		var active bool
		var retained int64
		if err := rows.Scan(&name, &plugin, &typ, &db, &active, &walStatus, &retained); err != nil {
			p.queryErr("existing_slots", err)
			return
		}
		if name == p.src.Slot {
			dbName := ""
			if cfg, err := sourcedb.ConnConfig(p.src); err == nil {
				dbName = cfg.Database
			}
			switch {
			case typ != "logical" || plugin != "pgoutput":
				p.r.add(Check{ID: "slot", Status: Fail, Finding: fmt.Sprintf("slot %s already exists as a %s slot with plugin %q, not a pgoutput logical slot", name, typ, plugin),
					Fix: fmt.Sprintf("drop it (SELECT pg_drop_replication_slot('%s')) if nothing uses it, or set slot = \"another_name\" in config.toml", name)})
			case db != dbName:
				p.r.add(Check{ID: "slot", Status: Fail, Finding: fmt.Sprintf("slot %s belongs to database %s, not %s", name, db, dbName),
					Fix: "set slot = \"another_name\" in config.toml"})
			case walStatus == "lost":
				p.r.add(Check{ID: "slot", Status: Fail, Finding: fmt.Sprintf("slot %s exists but its WAL is lost: it cannot stream", name),
					Fix: fmt.Sprintf("drop it (SELECT pg_drop_replication_slot('%s')); btfu then starts a new chain with a base backup", name)})
			default:
				p.r.add(Check{ID: "slot", Status: OK, Finding: fmt.Sprintf("slot %s exists (pgoutput, %s, retains %s); it will be adopted", name, orDash(walStatus), human.Bytes(retained))})
			}
			continue
		}
		line := fmt.Sprintf("%s (%s %s, %s, %s, retains %s)", name, typ, orDash(plugin), map[bool]string{true: "active", false: "inactive"}[active], orDash(walStatus), human.Bytes(retained))
		others = append(others, line)
		if (!active && retained > 1<<30) || walStatus == "unreserved" || walStatus == "lost" {
			worst = Warn
			fix = "inactive slots keep WAL on the source's disk; drop the ones nothing uses (SELECT pg_drop_replication_slot('name'))"
		}
	}
	if err := rows.Err(); err != nil {
		p.queryErr("existing_slots", err)
		return
	}
	if _, ok := p.r.Check("slot"); !ok {
		p.r.add(Check{ID: "slot", Status: Info, Finding: fmt.Sprintf("slot %s does not exist yet; the first base backup creates it (with its exported snapshot)", p.src.Slot)})
	}
	finding := fmt.Sprintf("%d other replication slot(s)", len(others))
	if worst == Warn {
		finding += ", some holding WAL"
	}
	p.r.add(Check{ID: "existing_slots", Status: worst, Finding: finding, Details: others, Fix: fix})
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (p *prober) checkLargeObjects() {
	var n int64
	if err := p.conn.QueryRow(p.ctx, `SELECT count(*) FROM pg_largeobject_metadata`).Scan(&n); err != nil {
		p.queryErr("large_objects", err)
		return
	}
	if n > 0 {
		p.r.add(Check{ID: "large_objects", Status: Warn, Finding: fmt.Sprintf("%d large object(s): not decoded; only the base backup's copy is restored", n),
			Fix: "store such data in bytea columns if it must be recoverable to a point in time"})
		return
	}
	p.r.add(Check{ID: "large_objects", Status: OK, Finding: "no large objects"})
}

func (p *prober) checkSequences() {
	var n int64
	if err := p.conn.QueryRow(p.ctx, `SELECT count(*) FROM pg_sequences WHERE schemaname NOT IN ('pg_catalog', 'information_schema')`).Scan(&n); err != nil {
		p.queryErr("sequences", err)
		return
	}
	p.r.add(Check{ID: "sequences", Status: Info, Finding: fmt.Sprintf("%d sequence(s): not decoded; btfu snapshots them and sets each at or above its value at the restore target", n)})
}

func (p *prober) checkExtensions() {
	rows, err := p.conn.Query(p.ctx, `SELECT extname || ' ' || extversion FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1`)
	if err != nil {
		p.queryErr("extensions", err)
		return
	}
	exts, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		p.queryErr("extensions", err)
		return
	}
	if len(exts) == 0 {
		p.r.add(Check{ID: "extensions", Status: OK, Finding: "no extensions beyond plpgsql"})
		return
	}
	p.r.add(Check{ID: "extensions", Status: Info, Finding: fmt.Sprintf("%d extension(s): a restore target must have them available", len(exts)), Details: exts})
}

func (p *prober) checkPgDump() {
	if p.r.ServerMajor == 0 {
		return
	}
	var found []string
	for _, name := range []string{"pg_dump", "pg_restore"} {
		prog, err := pgbin.Find(p.ctx, name, p.r.ServerMajor)
		if err != nil {
			finding, _, _ := strings.Cut(err.Error(), "; install") // the fix has its own line
			p.r.add(Check{ID: "pg_dump", Status: Fail, Finding: finding,
				Fix: fmt.Sprintf("install the PostgreSQL %d client (Debian: apt-get install postgresql-client-%d) or set %s", p.r.ServerMajor, p.r.ServerMajor, pgbin.EnvBinDir)})
			return
		}
		found = append(found, prog.String())
	}
	p.r.add(Check{ID: "pg_dump", Status: OK, Finding: "pg_dump and pg_restore match the server: " + strings.Join(found, "; ")})
}

// assumedDumpRate is a conservative pg_dump throughput for the estimate.
const assumedDumpRate = 30 << 20 // bytes/s

// checkDrills announces what restore drills do on the source, when a
// schedule is set: nothing else touches it.
func (p *prober) checkDrills() {
	if p.src.DrillSchedule == "" || p.src.DrillSchedule == "off" {
		return
	}
	p.r.add(Check{ID: "drills", Status: Info, Finding: fmt.Sprintf("restore drills (drill_schedule %q): each creates a temporary slot with an exported snapshot, takes ACCESS SHARE locks on the published tables as pg_dump does, reads each of them once in that snapshot to hash its rows, and drops the slot; the restore goes to drill_target, never the source", p.src.DrillSchedule)})
}

func (p *prober) checkWALBudget() {
	var keepMB int64
	if err := p.conn.QueryRow(p.ctx, `SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size'`).Scan(&keepMB); err != nil {
		p.queryErr("wal_budget", err)
		return
	}
	var l1, l2 string
	var standby bool
	_ = p.conn.QueryRow(p.ctx, `SELECT pg_is_in_recovery()`).Scan(&standby)
	if !standby {
		_ = p.conn.QueryRow(p.ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&l1)
		start := time.Now()
		select {
		case <-time.After(p.opts.WALSample):
		case <-p.ctx.Done():
			return
		}
		_ = p.conn.QueryRow(p.ctx, `SELECT pg_current_wal_lsn()::text`).Scan(&l2)
		a, err1 := pglogrepl.ParseLSN(l1)
		b, err2 := pglogrepl.ParseLSN(l2)
		if err1 == nil && err2 == nil && b >= a {
			p.walRate = float64(b-a) / time.Since(start).Seconds()
		}
	}
	dumpSecs := float64(p.dbSize)/assumedDumpRate + 10
	expected := int64(p.walRate * dumpSecs)
	details := []string{
		fmt.Sprintf("database size %s; estimated first base backup %s at %s/s", human.Bytes(p.dbSize), time.Duration(dumpSecs*float64(time.Second)).Round(time.Second), human.Bytes(assumedDumpRate)),
		fmt.Sprintf("WAL rate now %s/s; WAL expected during the dump %s", human.Bytes(int64(p.walRate)), human.Bytes(expected)),
	}
	if p.r.ServerMajor >= 18 {
		var idle string
		if err := p.conn.QueryRow(p.ctx, `SELECT current_setting('idle_replication_slot_timeout')`).Scan(&idle); err == nil && idle != "0" {
			details = append(details, "idle_replication_slot_timeout = "+idle+": a slot idle that long (btfu stopped or paused) is invalidated")
		}
	}
	if keepMB < 0 {
		p.r.add(Check{ID: "wal_budget", Status: OK, Finding: "max_slot_wal_keep_size is unlimited: the slot survives a long base backup (watch the source's disk)", Details: details})
		return
	}
	keep := keepMB << 20
	details = append(details, "max_slot_wal_keep_size = "+human.Bytes(keep))
	switch {
	case expected > keep:
		p.r.add(Check{ID: "wal_budget", Status: Fail, Finding: fmt.Sprintf("the slot would likely be invalidated during the first base backup: %s of WAL expected, %s allowed", human.Bytes(expected), human.Bytes(keep)),
			Details: details, Fix: "raise max_slot_wal_keep_size, or take the first base backup at a quiet time"})
	case expected > keep/2:
		p.r.add(Check{ID: "wal_budget", Status: Warn, Finding: fmt.Sprintf("tight: %s of WAL expected during the first base backup, %s allowed", human.Bytes(expected), human.Bytes(keep)), Details: details,
			Fix: "raise max_slot_wal_keep_size, or take the first base backup at a quiet time"})
	default:
		p.r.add(Check{ID: "wal_budget", Status: OK, Finding: fmt.Sprintf("%s of WAL expected during the first base backup, within max_slot_wal_keep_size %s", human.Bytes(expected), human.Bytes(keep)), Details: details})
	}
}

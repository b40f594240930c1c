package sourcedb

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/segment"
)

// DDL-capture objects, created by registration where allowed.
const (
	DDLSchema   = "btfu"
	DDLFunction = "btfu.capture_ddl"
	// DDLCore does the work of the trigger with the rights of btfu's
	// role (SECURITY DEFINER): adding a table to the publication needs
	// its owner, and the trigger runs as whoever ran the DDL.
	DDLCore    = "btfu.capture_ddl_core"
	DDLTrigger = "btfu_capture_ddl"
	// DDLStartTrigger (ddl_command_start, ALTER TABLE only) takes a table
	// out of the publication before ALTER TABLE … SET UNLOGGED, which
	// PostgreSQL refuses for a published table.
	// DDLDropTrigger (sql_drop) notes what a DROP removed, with its
	// temporary flag, for the ddl_command_end trigger's message: replay
	// leaves drops of temporary objects alone.
	DDLDropTrigger  = "btfu_capture_ddl_drop"
	DDLDropFunction = "btfu.capture_ddl_drop"
	// droppedSetting carries the dropped objects from the sql_drop
	// trigger to the ddl_command_end trigger, within the transaction.
	droppedSetting = "btfu.dropped"
	// cicSetting holds, for the session, the statement key of the CREATE
	// INDEX CONCURRENTLY the start trigger noted.
	cicSetting = "btfu.cic"
	// partsSetting carries, from the start trigger of an ALTER TABLE that
	// detaches, the partitions published through their root.
	partsSetting = "btfu.parts_before"
	// startTags are the commands the start trigger fires on.
	startTags = "'ALTER TABLE', 'CREATE INDEX'"
	// droppedTablesSetting carries every table a DROP removed.
	droppedTablesSetting = "btfu.dropped_tables"
	DDLStartTrigger      = "btfu_capture_ddl_start"
	DDLStartFunction     = "btfu.capture_ddl_start"
	DDLStartCore         = "btfu.capture_ddl_start_core"
	// unloggedSetting carries, within a transaction, the tables the start
	// trigger took out, so the end trigger puts back those still logged.
	unloggedSetting = "btfu.out_for_unlogged"
	// IdentityTable lists the tables btfu set to REPLICA IDENTITY FULL,
	// with their identity before, so unregister can put it back.
	IdentityTable = "btfu.replica_identity_set"
	// The prefixes of the messages the trigger emits (see segment).
	DDLMessagePrefix    = segment.DDLMessagePrefix
	RowsMessagePrefix   = segment.RowsMessagePrefix
	MissedMessagePrefix = segment.MissedMessagePrefix
	TableMessagePrefix  = segment.TableMessagePrefix
	OrderMessagePrefix  = segment.OrderMessagePrefix
	// InternalSetting, set to "on" in btfu's own sessions, makes the
	// trigger ignore btfu's own statements (publication upkeep, REPLICA
	// IDENTITY FULL) and the statements it runs itself.
	InternalSetting = "btfu.internal"
	// ddlCaptureVersion is the version of the message format ("v"): 3
	// adds "dropped", 4 "nested", "defs" and "unrebuilt" (DDL run inside
	// a function, procedure or DO block), 5 "concurrently" and "cic"
	// (CREATE INDEX CONCURRENTLY noted at its start).
	ddlCaptureVersion = 5
)

// DDLObjects names what DDL capture puts on the source, for the plan.
func DDLObjects() []string {
	return []string{
		"schema " + DDLSchema,
		"table " + IdentityTable + " (tables btfu set to REPLICA IDENTITY FULL)",
		"function " + DDLFunction + "()",
		"function " + DDLCore + "(text, text) SECURITY DEFINER (keeps the publication's table list)",
		"event trigger " + DDLTrigger + " ON ddl_command_end",
		"function " + DDLStartFunction + "(), " + DDLStartCore + "() SECURITY DEFINER, event trigger " + DDLStartTrigger + " ON ddl_command_start WHEN TAG IN (" + startTags + ") (takes a table out of the publication before SET UNLOGGED; notes CREATE INDEX CONCURRENTLY before it commits its first phase)",
		"function " + DDLDropFunction + "(), event trigger " + DDLDropTrigger + " ON sql_drop (notes which dropped objects were temporary)",
	}
}

// DDLStatements create (or bring up to date) the DDL-capture objects for
// src. The trigger, in the transaction of the DDL and so in commit order:
//   - emits one transactional logical message per DDL command with the
//     command tag, the statement text, the search_path, a key equal for
//     every command of one client statement, and the objects it touched;
//   - keeps the publication's table list current: a new (or changed)
//     table with a usable replica identity joins the publication at once,
//     so it is covered from its first row; a table without one is set to
//     REPLICA IDENTITY FULL when the config says so, else left out; a
//     published table that loses its identity is set to FULL or leaves
//     the publication, so the application's UPDATE and DELETE never fail;
//   - for CREATE TABLE AS and SELECT INTO into a table it publishes,
//     emits the table's definition and its rows (written before the table
//     joined the publication, so not in the stream);
//   - turns any error of its own into a WARNING: the user's DDL goes
//     through, and a btfu.ddl_missed message tells replay to fall back to
//     relation-derived changes (DESIGN 6.5).
func DDLStatements(src *config.Source) []string {
	return []string{
		"CREATE SCHEMA IF NOT EXISTS " + DDLSchema,
		"GRANT USAGE ON SCHEMA " + DDLSchema + " TO PUBLIC",
		"CREATE TABLE IF NOT EXISTS " + IdentityTable + " (relid oid PRIMARY KEY, schema_name text NOT NULL, table_name text NOT NULL, previous text NOT NULL, set_at timestamptz NOT NULL DEFAULT now())",
		ddlFunctionSQL(),
		// An older btfu's core returned void; the return type cannot be
		// replaced in place.
		"DROP FUNCTION IF EXISTS " + DDLCore + "(text, text)",
		ddlCoreSQL(src),
		"REVOKE ALL ON FUNCTION " + DDLCore + "(text, text) FROM PUBLIC",
		"GRANT EXECUTE ON FUNCTION " + DDLCore + "(text, text) TO PUBLIC",
		ddlStartCoreSQL(src),
		ddlStartFunctionSQL(),
		ddlDropFunctionSQL(),
		`DO $btfu$ BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '` + DDLTrigger + `') THEN
    CREATE EVENT TRIGGER ` + DDLTrigger + ` ON ddl_command_end EXECUTE FUNCTION ` + DDLFunction + `();
  END IF;
  -- The start trigger's tags grew (CREATE INDEX): made again when they differ.
  IF EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '` + DDLStartTrigger + `' AND evttags IS DISTINCT FROM ARRAY[` + startTags + `]) THEN
    DROP EVENT TRIGGER ` + DDLStartTrigger + `;
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '` + DDLStartTrigger + `') THEN
    CREATE EVENT TRIGGER ` + DDLStartTrigger + ` ON ddl_command_start WHEN TAG IN (` + startTags + `) EXECUTE FUNCTION ` + DDLStartFunction + `();
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '` + DDLDropTrigger + `') THEN
    CREATE EVENT TRIGGER ` + DDLDropTrigger + ` ON sql_drop EXECUTE FUNCTION ` + DDLDropFunction + `();
  END IF;
END $btfu$`,
		// DDL run with session_replication_role = replica (migration and
		// bulk-load tools set it) is DDL too: the triggers fire always.
		"ALTER EVENT TRIGGER " + DDLTrigger + " ENABLE ALWAYS",
		"ALTER EVENT TRIGGER " + DDLStartTrigger + " ENABLE ALWAYS",
		"ALTER EVENT TRIGGER " + DDLDropTrigger + " ENABLE ALWAYS",
	}
}

// ddlFunctionSQL is the ddl_command_end trigger's function. It runs with
// the rights of whoever ran the DDL, so the search_path it records is
// theirs. The SECURITY DEFINER core does the work and hands back the
// messages, which this function emits outside any subtransaction: a
// message emitted inside one (an EXCEPTION block) can be decoded after the
// changes that follow it in the transaction (seen on PostgreSQL 15 with
// "ALTER TABLE …; INSERT …" in one query), and replay needs it before
// them. It never fails the DDL: an error of the core becomes a WARNING and
// a btfu.ddl_missed message.
func ddlFunctionSQL() string {
	return `CREATE OR REPLACE FUNCTION ` + DDLFunction + `() RETURNS event_trigger LANGUAGE plpgsql AS $btfu$
DECLARE
  prefixes text[];
  contents text[];
  target jsonb;
  batch text[];
  saved text[];
  session jsonb;
  r record;
BEGIN
  IF pg_catalog.current_setting('` + InternalSetting + `', true) = 'on' THEN
    RETURN;
  END IF;
  -- The session's settings the statement's constants were read in go
  -- with its message; what the core deparses (defaults, partition
  -- bounds) and the rows of CREATE TABLE AS are written in forms every
  -- session reads back alike. Put back at the end.
  session := pg_catalog.jsonb_build_object('DateStyle', pg_catalog.current_setting('DateStyle'),
    'IntervalStyle', pg_catalog.current_setting('IntervalStyle'), 'TimeZone', pg_catalog.current_setting('TimeZone'),
    'role', current_user);
  saved := ARRAY[pg_catalog.current_setting('DateStyle'), pg_catalog.current_setting('IntervalStyle'), pg_catalog.current_setting('extra_float_digits'),
    pg_catalog.current_setting('lc_monetary'), pg_catalog.current_setting('bytea_output'), pg_catalog.current_setting('TimeZone')];
  PERFORM pg_catalog.set_config('DateStyle', 'ISO, MDY', true), pg_catalog.set_config('IntervalStyle', 'postgres', true),
    pg_catalog.set_config('extra_float_digits', '3', true), pg_catalog.set_config('lc_monetary', 'C', true),
    pg_catalog.set_config('bytea_output', 'hex', true), pg_catalog.set_config('TimeZone', 'UTC', true);
  BEGIN
    PERFORM pg_catalog.set_config('` + InternalSetting + `', 'on', true);
    SELECT pg_catalog.array_agg(m.msg_prefix ORDER BY m.n), pg_catalog.array_agg(m.msg_content ORDER BY m.n) INTO prefixes, contents
      FROM ` + DDLCore + `(pg_catalog.current_setting('search_path'), tg_tag) WITH ORDINALITY AS m(msg_prefix, msg_content, n);
    PERFORM pg_catalog.set_config('` + InternalSetting + `', 'off', true);
  EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'btfu could not capture this % statement (%: %); it went through, and btfu falls back to the changes it derives from the stream', tg_tag, SQLSTATE, SQLERRM;
    prefixes := ARRAY['` + MissedMessagePrefix + `'];
    contents := ARRAY[pg_catalog.jsonb_build_object('v', 1, 'tag', tg_tag, 'error', SQLERRM, 'query', pg_catalog.left(pg_catalog.current_query(), 100000))::text];
  END;
  FOR i IN 1 .. COALESCE(pg_catalog.array_length(prefixes, 1), 0) LOOP
    IF prefixes[i] = '` + DDLMessagePrefix + `' THEN
      contents[i] := (contents[i]::jsonb || pg_catalog.jsonb_build_object('session', session))::text;
    END IF;
    IF prefixes[i] <> 'rows' THEN
      PERFORM pg_catalog.pg_logical_emit_message(true, prefixes[i], contents[i]);
      CONTINUE;
    END IF;
    -- The rows of a CREATE TABLE AS / SELECT INTO table btfu publishes,
    -- in messages of bounded size. Its creator may read it.
    target := contents[i]::jsonb;
    batch := '{}';
    -- ROW(t.*), not t: a column named t would be taken for the row.
    FOR r IN EXECUTE pg_catalog.format('SELECT ROW(t.*)::text AS row FROM ONLY %I.%I t', target->>'schema', target->>'table') LOOP
      batch := batch || r.row;
      IF pg_catalog.cardinality(batch) >= 1000 THEN
        PERFORM pg_catalog.pg_logical_emit_message(true, '` + RowsMessagePrefix + `', pg_catalog.jsonb_build_object('v', 1, 'schema', target->>'schema', 'table', target->>'table', 'rows', pg_catalog.to_jsonb(batch))::text);
        batch := '{}';
      END IF;
    END LOOP;
    IF pg_catalog.cardinality(batch) > 0 THEN
      PERFORM pg_catalog.pg_logical_emit_message(true, '` + RowsMessagePrefix + `', pg_catalog.jsonb_build_object('v', 1, 'schema', target->>'schema', 'table', target->>'table', 'rows', pg_catalog.to_jsonb(batch))::text);
    END IF;
  END LOOP;
  PERFORM pg_catalog.set_config('DateStyle', saved[1], true), pg_catalog.set_config('IntervalStyle', saved[2], true),
    pg_catalog.set_config('extra_float_digits', saved[3], true), pg_catalog.set_config('lc_monetary', saved[4], true),
    pg_catalog.set_config('bytea_output', saved[5], true), pg_catalog.set_config('TimeZone', saved[6], true);
  IF COALESCE(pg_catalog.array_length(prefixes, 1), 0) > 0 THEN
    PERFORM pg_catalog.pg_logical_emit_message(true, '` + OrderMessagePrefix + `', '');
  END IF;
END
$btfu$`
}

// ddlDropFunctionSQL is the sql_drop trigger's function: it notes the
// objects the DROP named, with their temporary flag, for the message the
// ddl_command_end trigger emits next (pg_event_trigger_dropped_objects is
// only readable here). Like the others, it never fails the statement.
func ddlDropFunctionSQL() string {
	return `CREATE OR REPLACE FUNCTION ` + DDLDropFunction + `() RETURNS event_trigger LANGUAGE plpgsql AS $btfu$
BEGIN
  IF pg_catalog.current_setting('` + InternalSetting + `', true) = 'on' THEN
    RETURN;
  END IF;
  BEGIN
    -- Objects without a schema of their own (a rule, trigger or policy on
    -- a temporary table) and functions of temporary types are named in
    -- pg_temp.
    -- Added to what is noted already: a DROP run by an event trigger of
    -- the application's (inside this DROP) reaches ddl_command_end first,
    -- and its message then carries both.
    PERFORM pg_catalog.set_config('` + droppedSetting + `', COALESCE((SELECT COALESCE(NULLIF(pg_catalog.current_setting('` + droppedSetting + `', true), '')::jsonb, '[]')
        || pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
        'type', d.object_type, 'identity', d.object_identity, 'schema', d.schema_name,
        'temp', d.is_temporary OR d.object_identity LIKE '%pg\_temp.%', 'original', true,
        'names', pg_catalog.to_jsonb(d.address_names)))
      FROM pg_catalog.pg_event_trigger_dropped_objects() d WHERE d.original)::text, pg_catalog.current_setting('` + droppedSetting + `', true), ''), true);
    -- Every table it dropped, with CASCADE too, so records that a table
    -- was left out end with it.
    PERFORM pg_catalog.set_config('` + droppedTablesSetting + `', COALESCE((SELECT COALESCE(NULLIF(pg_catalog.current_setting('` + droppedTablesSetting + `', true), '')::jsonb, '[]')
        || pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(d.schema_name, d.object_name))
      FROM pg_catalog.pg_event_trigger_dropped_objects() d WHERE d.object_type = 'table' AND NOT d.is_temporary AND d.object_name IS NOT NULL)::text,
      pg_catalog.current_setting('` + droppedTablesSetting + `', true), ''), true);
  EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'btfu could not note the objects this DROP removed (%: %)', SQLSTATE, SQLERRM;
  END;
END
$btfu$`
}

// ddlStartFunctionSQL is the ddl_command_start trigger's function; like
// ddlFunctionSQL it never fails the statement.
func ddlStartFunctionSQL() string {
	return `CREATE OR REPLACE FUNCTION ` + DDLStartFunction + `() RETURNS event_trigger LANGUAGE plpgsql AS $btfu$
DECLARE
  q text;
  k text;
BEGIN
  IF pg_catalog.current_setting('` + InternalSetting + `', true) = 'on' THEN
    RETURN;
  END IF;
  IF tg_tag = 'CREATE INDEX' THEN
    -- CREATE INDEX CONCURRENTLY commits its first phase (the index,
    -- invalid) before it builds; a build that fails then leaves the
    -- invalid index, and ddl_command_end never fires. Noted here, in the
    -- first phase's transaction, so replay makes it at the same point;
    -- ddl_command_end marks its own message as the same statement.
    BEGIN
      q := pg_catalog.regexp_replace(pg_catalog.current_query(), '^(\s|--[^\n]*\n|/\*.*?\*/)*', '');
      IF q ~* '^create\s+(unique\s+)?index\s+concurrently\M' THEN
        k := 'cic:' || pg_catalog.pg_backend_pid()::text || ':' || extract(epoch FROM pg_catalog.statement_timestamp())::text;
        PERFORM pg_catalog.pg_logical_emit_message(true, '` + DDLMessagePrefix + `', pg_catalog.jsonb_build_object('v', ` + fmt.Sprint(ddlCaptureVersion) + `,
          'tag', tg_tag, 'query', pg_catalog.current_query(), 'search_path', pg_catalog.current_setting('search_path'),
          'stmt', k, 'concurrently', 'start')::text);
        PERFORM pg_catalog.pg_logical_emit_message(true, '` + OrderMessagePrefix + `', '');
        PERFORM pg_catalog.set_config('` + cicSetting + `', k, false);
      END IF;
    EXCEPTION WHEN OTHERS THEN
      RAISE WARNING 'btfu could not note this CREATE INDEX CONCURRENTLY (%: %); if it fails, a restore lacks its invalid index', SQLSTATE, SQLERRM;
    END;
    RETURN;
  END IF;
  BEGIN
    PERFORM pg_catalog.set_config('` + InternalSetting + `', 'on', true);
    PERFORM ` + DDLStartCore + `();
    PERFORM pg_catalog.set_config('` + InternalSetting + `', 'off', true);
  EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'btfu could not prepare the publication for this ALTER TABLE (%: %)', SQLSTATE, SQLERRM;
  END;
END
$btfu$`
}

// ddlStartCoreSQL: before an ALTER TABLE … SET UNLOGGED, the published
// tables the statement names leave the publication (PostgreSQL refuses to
// make a published table unlogged); the end trigger puts back those that
// are still logged, and reports the others as left out.
func ddlStartCoreSQL(src *config.Source) string {
	return `CREATE OR REPLACE FUNCTION ` + DDLStartCore + `() RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $btfu$
DECLARE
  q constant text := lower(current_query());
  pubid oid;
  r record;
  taken text := '';
  saved_lock_timeout text := current_setting('lock_timeout');
BEGIN
  IF q !~ 'set\s+unlogged' AND q !~ 'detach\s+partition' THEN
    RETURN;
  END IF;
  SELECT oid INTO pubid FROM pg_publication WHERE pubname = ` + quoteLiteral(src.Publication) + ` AND NOT puballtables;
  IF pubid IS NULL THEN
    RETURN;
  END IF;
  IF q ~ 'detach\s+partition' THEN
    -- The partitions published through their root now: one detached
    -- leaves the publication with its root; the end trigger adds it
    -- alone (pg_event_trigger_ddl_commands names the root only).
    PERFORM set_config('` + partsSetting + `', coalesce((SELECT string_agg(c.oid::text || ':' || i.inhparent::text, ',') FROM pg_class c
      JOIN pg_inherits i ON i.inhrelid = c.oid
      WHERE c.relispartition AND EXISTS (SELECT 1 FROM pg_publication_rel pr WHERE pr.prpubid = pubid AND pr.prrelid = pg_partition_root(c.oid))), ''), true);
  END IF;
  IF q !~ 'set\s+unlogged' THEN
    RETURN;
  END IF;
  FOR r IN SELECT c.oid, n.nspname, c.relname FROM pg_publication_rel pr JOIN pg_class c ON c.oid = pr.prrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE pr.prpubid = pubid AND position(lower(c.relname) IN q) > 0 LOOP
    PERFORM set_config('lock_timeout', '200ms', true);
    EXECUTE format('ALTER PUBLICATION %s DROP TABLE ONLY %I.%I', ` + quoteLiteral(quoteIdent(src.Publication)) + `, r.nspname, r.relname);
    PERFORM set_config('lock_timeout', saved_lock_timeout, true);
    taken := taken || r.oid::text || ',';
  END LOOP;
  PERFORM set_config('` + unloggedSetting + `', coalesce(current_setting('` + unloggedSetting + `', true), '') || taken, true);
END
$btfu$`
}

// ddlCoreSQL is the trigger's work, run as btfu's role with a safe
// search_path. Its errors reach ddlFunctionSQL's handler.
func ddlCoreSQL(src *config.Source) string {
	full := "false"
	if src.TablesWithoutKey == config.KeylessFull {
		full = "true"
	}
	pub := quoteLiteral(quoteIdent(src.Publication))
	return `CREATE OR REPLACE FUNCTION ` + DDLCore + `(user_search_path text, tag text) RETURNS TABLE (msg_prefix text, msg_content text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $btfu$
DECLARE
  pubname constant text := ` + quoteLiteral(src.Publication) + `;
  pubident constant text := ` + pub + `;
  new_full constant boolean := ` + full + `;
  pubid oid;
  viaroot boolean;
  objs jsonb;
  rels oid[];
  rel record;
  create_sql text;
  decision text;
  usable boolean;
  r record;
  saved_lock_timeout text := current_setting('lock_timeout');
  -- Tables this statement created (also inside CREATE SCHEMA … CREATE
  -- TABLE): covered from their first row, they never "join".
  created_rels oid[];
  taken oid[] := string_to_array(trim(trailing ',' FROM coalesce(current_setting('` + unloggedSetting + `', true), '')), ',')::oid[];
  dropped jsonb := nullif(current_setting('` + droppedSetting + `', true), '')::jsonb;
  dropped_tables jsonb := nullif(current_setting('` + droppedTablesSetting + `', true), '')::jsonb;
  -- Partitions this statement attached (ALTER TABLE … ATTACH PARTITION
  -- names the parent only), with their own partitions.
  attached oid[] := '{}';
  -- Partitions this statement detached: their rows were in the stream
  -- through their root, so they stay covered, alone now.
  detached oid[] := '{}';
  detached_from oid[] := '{}';
  -- DDL inside a function, procedure or DO block (see nestedSQL).
  q text;
  nested boolean := false;
  defs text[] := '{}';
  -- A top-level CREATE TABLE rebuilt from the catalog, for replay to run
  -- where its text fails on the target.
  fallback text[] := '{}';
  -- tables the rebuild scanned in this firing
  scanned oid[] := '{}';
  unrebuilt text[] := '{}';
  seen text := coalesce(current_setting('` + nestedSeenSetting + `', true), '');
  seen_before text := seen;
  top bigint;
  hi bigint;
  cmd record;
  def text;
  handled boolean;
  alter_rel oid;
  r_kind "char";
  r_temp boolean;
  emit boolean;
  rebuilt boolean;
  changed boolean;
  base int;
  tok text;
  relq text;
BEGIN
  IF dropped IS NOT NULL THEN
    PERFORM set_config('` + droppedSetting + `', '', true);
  END IF;
  IF dropped_tables IS NOT NULL THEN
    PERFORM set_config('` + droppedTablesSetting + `', '', true);
  END IF;
  -- An object is temporary when its schema is, or when the relation it
  -- belongs to is (triggers, rules, policies, constraints and defaults
  -- have no schema of their own).
  SELECT coalesce(jsonb_agg(jsonb_build_object('type', d.object_type, 'identity', d.object_identity, 'schema', d.schema_name,
           'temp', coalesce(d.schema_name = 'pg_temp' OR d.schema_name LIKE 'pg\_temp\_%', false)
             OR coalesce((SELECT c.relpersistence = 't' FROM pg_class c WHERE c.oid = d.relid), false)
             -- "effectively temporary": a function of a temporary table's
             -- row type lives in a permanent schema but goes with the session
             OR EXISTS (SELECT 1 FROM pg_depend dep JOIN pg_type ty ON ty.oid = dep.refobjid JOIN pg_namespace tn ON tn.oid = ty.typnamespace
               WHERE dep.classid = d.classid AND dep.objid = d.objid AND dep.refclassid = 'pg_type'::regclass AND tn.nspname LIKE 'pg\_temp\_%'))), '[]'::jsonb),
         array_agg(DISTINCT d.relid) FILTER (WHERE d.classid IN ('pg_class'::regclass, 'pg_constraint'::regclass)),
         array_agg(DISTINCT d.objid) FILTER (WHERE d.classid = 'pg_class'::regclass AND d.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO'))
    INTO objs, rels, created_rels
    FROM (SELECT e.*, CASE e.classid
             WHEN 'pg_class'::regclass THEN e.objid
             WHEN 'pg_constraint'::regclass THEN (SELECT conrelid FROM pg_constraint WHERE oid = e.objid)
             WHEN 'pg_trigger'::regclass THEN (SELECT tgrelid FROM pg_trigger WHERE oid = e.objid)
             WHEN 'pg_rewrite'::regclass THEN (SELECT ev_class FROM pg_rewrite WHERE oid = e.objid)
             WHEN 'pg_policy'::regclass THEN (SELECT polrelid FROM pg_policy WHERE oid = e.objid)
             WHEN 'pg_attrdef'::regclass THEN (SELECT adrelid FROM pg_attrdef WHERE oid = e.objid)
             END AS relid
          FROM pg_event_trigger_ddl_commands() e WHERE NOT e.in_extension) d;
  SELECT oid, pubviaroot INTO pubid, viaroot FROM pg_publication WHERE pg_publication.pubname = ` + quoteLiteral(src.Publication) + `;
  -- Partitions the start trigger saw under a published root that are
  -- partitions no more: detached by this statement.
  IF coalesce(current_setting('` + partsSetting + `', true), '') <> '' THEN
    SELECT coalesce(array_agg(c.oid), '{}'), coalesce(array_agg(d.parent), '{}') INTO detached, detached_from
      FROM (SELECT split_part(x, ':', 1)::oid AS child, split_part(x, ':', 2)::oid AS parent
            FROM unnest(string_to_array(current_setting('` + partsSetting + `', true), ',')) x) d
      JOIN pg_class c ON c.oid = d.child WHERE NOT c.relispartition;
    PERFORM set_config('` + partsSetting + `', '', true);
  END IF;

  -- The definition of a CREATE TABLE AS / SELECT INTO table, for replay
  -- to create it without running the query again.
  IF tag IN ('CREATE TABLE AS', 'SELECT INTO') AND rels IS NOT NULL THEN
    SELECT format('CREATE %sTABLE %I.%I (%s)', CASE c.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END, n.nspname, c.relname,
             coalesce(string_agg(format('%I %s%s', a.attname, format_type(a.atttypid, a.atttypmod),
               CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END),
               ', ' ORDER BY a.attnum) FILTER (WHERE a.attnum > 0 AND NOT a.attisdropped), ''))
      INTO create_sql
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN pg_attribute a ON a.attrelid = c.oid
      LEFT JOIN pg_type t ON t.oid = a.atttypid
      WHERE c.oid = rels[1] AND c.relkind IN ('r', 'p') AND c.relpersistence IN ('p', 'u')
      GROUP BY n.nspname, c.relname, c.relpersistence;
  END IF;

  -- A failure here costs the rebuilt statements, not the message nor the
  -- publication upkeep.
  BEGIN
` + nestedSQL() + `
    IF NOT nested THEN
      fallback := defs;
      defs := '{}';
      unrebuilt := '{}';
    END IF;
    -- A detach inside a function or DO block: rebuilt from what the start
    -- trigger saw.
    IF nested THEN
      FOR r IN SELECT format('%I.%I', cn.nspname, c.relname) AS child, format('%I.%I', pn.nspname, pc.relname) AS parent
          FROM unnest(detached, detached_from) d(child, parent) JOIN pg_class c ON c.oid = d.child JOIN pg_namespace cn ON cn.oid = c.relnamespace
          JOIN pg_class pc ON pc.oid = d.parent JOIN pg_namespace pn ON pn.oid = pc.relnamespace LOOP
        defs := defs || format('DO $btfu_def$ BEGIN IF EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhrelid = %L::regclass AND inhparent = %L::regclass) THEN ALTER TABLE %s DETACH PARTITION %s; END IF; END $btfu_def$',
          r.child, r.parent, r.parent, r.child);
        unrebuilt := array_remove(unrebuilt, 'ALTER TABLE ' || r.parent);
      END LOOP;
    END IF;
    IF seen IS DISTINCT FROM seen_before THEN
      PERFORM set_config('` + nestedSeenSetting + `', seen, true);
    END IF;
  EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'btfu could not rebuild this % statement from the catalog (%: %); a restore will report it', tag, SQLSTATE, SQLERRM;
    defs := '{}';
    unrebuilt := ARRAY[format('%s (btfu could not rebuild it: %s)', tag, SQLERRM)];
  END;

  msg_prefix := '` + DDLMessagePrefix + `'; msg_content := jsonb_strip_nulls(jsonb_build_object(
    'v', ` + fmt.Sprint(ddlCaptureVersion) + `,
    'tag', tag,
    'query', current_query(),
    'search_path', user_search_path,
    'stmt', txid_current()::text || ':' || pg_backend_pid()::text || ':' || extract(epoch FROM statement_timestamp())::text,
    'objects', objs,
    'dropped', dropped,
    'create', create_sql,
    'nested', CASE WHEN nested THEN true END,
    'defs', CASE WHEN nested THEN to_jsonb(defs) END,
    'fallback', CASE WHEN NOT nested AND cardinality(fallback) > 0 THEN to_jsonb(fallback) END,
    'unrebuilt', CASE WHEN nested AND cardinality(unrebuilt) > 0 THEN to_jsonb(unrebuilt) END,
    -- btfu's own publication is not the application's schema: a restore
    -- must not recreate or change it.
    'skip', CASE WHEN tag LIKE '% PUBLICATION' AND position(pubname IN current_query()) > 0 THEN true END,
    -- the CREATE INDEX CONCURRENTLY the start trigger noted
    'cic', CASE WHEN tag = 'CREATE INDEX' AND current_setting('` + cicSetting + `', true) =
        'cic:' || pg_backend_pid()::text || ':' || extract(epoch FROM statement_timestamp())::text
      THEN current_setting('` + cicSetting + `', true) END,
    -- GRANT and REVOKE name no objects here: one that names a temporary
    -- table of the session (which a bare name then means) is temporary.
    'temp', CASE WHEN tag IN ('GRANT', 'REVOKE') AND pg_my_temp_schema() <> 0 AND EXISTS (SELECT 1 FROM pg_class c
      WHERE c.relnamespace = pg_my_temp_schema() AND lower(current_query()) ~ ('\m' || regexp_replace(lower(c.relname), '([^a-z0-9_])', '\\\1', 'g') || '\M'))
      THEN true END,
    -- The relations of a schema renamed: pgoutput sends no new Relation
    -- message for them (the rename does not touch their relcache
    -- entries), so the stream goes on naming the old schema.
    'relids', CASE WHEN tag = 'ALTER SCHEMA' THEN (SELECT jsonb_agg(c.oid::int8) FROM pg_class c
      WHERE c.relkind IN ('r', 'p') AND c.relnamespace IN (SELECT objid FROM pg_event_trigger_ddl_commands() WHERE classid = 'pg_namespace'::regclass)) END,
    -- Partitions it made or attached, with their bounds as evaluated on
    -- the source: a bound may be an expression (TO (now())) that the
    -- target would evaluate again, to another value.
    'bounds', (SELECT jsonb_agg(jsonb_build_object('table', format('%I.%I', n.nspname, c.relname),
        'parent', format('%I.%I', pn.nspname, pc.relname), 'bound', pg_get_expr(c.relpartbound, c.oid)))
      FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_class pc ON pc.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = pc.relnamespace
      WHERE c.relispartition AND c.relpersistence <> 't'
        AND tag IN ('CREATE TABLE', 'ALTER TABLE', 'CREATE FOREIGN TABLE')
        AND (c.oid = ANY (coalesce(created_rels, '{}')) OR (i.inhparent = ANY (coalesce(rels, '{}')) AND ` + mineSQL("i.xmin") + `)))))::text;
  RETURN NEXT;
  -- Tables that no longer exist: their coverage records end here.
  IF dropped_tables IS NOT NULL THEN
    FOR r IN SELECT x->>0 AS nspname, x->>1 AS relname FROM jsonb_array_elements(dropped_tables) x LOOP
      msg_prefix := '` + TableMessagePrefix + `'; msg_content := jsonb_build_object('v', 1, 'action', 'dropped', 'schema', r.nspname, 'table', r.relname)::text; RETURN NEXT;
    END LOOP;
  END IF;

  -- A FOR ALL TABLES publication (an older btfu's) takes new tables by
  -- itself; registration at start replaces it by the list.
  IF pubid IS NULL OR (SELECT puballtables FROM pg_publication WHERE oid = pubid) THEN
    RETURN;
  END IF;
  -- Publication upkeep fails alone: the DDL message above stays, and the
  -- periodic check catches up with the table list.
  BEGIN
  -- A DROP may have removed the index a published table's identity
  -- relied on: look at every published table then.
  IF tag LIKE 'DROP %' THEN
    SELECT array_agg(prrelid) INTO rels FROM pg_publication_rel WHERE prpubid = pubid;
  END IF;
  -- Tables the start trigger took out for SET UNLOGGED: those now
  -- unlogged are left out (not in the WAL), the others go back in.
  IF cardinality(taken) > 0 THEN
    PERFORM set_config('` + unloggedSetting + `', '', true);
    FOR r IN SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.oid = ANY (taken) AND c.relpersistence = 'u' LOOP
      msg_prefix := '` + TableMessagePrefix + `'; msg_content := jsonb_build_object('v', 1, 'action', 'unlogged', 'schema', r.nspname, 'table', r.relname)::text; RETURN NEXT;
    END LOOP;
    rels := coalesce(rels, '{}') || taken;
  END IF;
  IF cardinality(detached) > 0 THEN
    rels := coalesce(rels, '{}') || detached;
  END IF;
  IF rels IS NOT NULL AND tag = 'ALTER TABLE' THEN
    attached := ARRAY(SELECT t.relid FROM pg_inherits i, LATERAL pg_partition_tree(i.inhrelid) t
      WHERE i.inhparent = ANY (rels) AND ` + mineSQL("i.xmin") + `);
    rels := rels || attached;
  END IF;
  IF rels IS NOT NULL THEN

  -- A published table moved into pg_catalog: pg_dump does not dump it,
  -- so no base backup holds it; it leaves the publication, and restores
  -- name it.
  FOR r IN SELECT c.relname FROM pg_class c JOIN pg_publication_rel pr ON pr.prrelid = c.oid AND pr.prpubid = pubid
      WHERE c.oid = ANY (rels) AND c.relnamespace = 'pg_catalog'::regnamespace LOOP
    PERFORM set_config('lock_timeout', '200ms', true);
    EXECUTE format('ALTER PUBLICATION %s DROP TABLE ONLY pg_catalog.%I', pubident, r.relname);
    PERFORM set_config('lock_timeout', saved_lock_timeout, true);
    msg_prefix := '` + TableMessagePrefix + `'; msg_content := jsonb_build_object('v', 1, 'action', 'catalog', 'schema', 'pg_catalog', 'table', r.relname)::text; RETURN NEXT;
  END LOOP;

  FOR rel IN
    SELECT c.oid, n.nspname, c.relname, c.relkind, c.relreplident, c.relispartition,
           EXISTS (SELECT 1 FROM pg_publication_rel pr WHERE pr.prpubid = pubid AND pr.prrelid = c.oid) AS listed,
           c.relispartition AND EXISTS (SELECT 1 FROM pg_publication_rel pr WHERE pr.prpubid = pubid AND pr.prrelid = pg_partition_root(c.oid)) AS via_root,
           EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary) AS has_pk,
           EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident AND i.indisvalid) AS has_ident_index
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = ANY (rels) AND c.relkind IN ('r', 'p') AND c.relpersistence = 'p'
      AND n.nspname NOT IN ('pg_catalog', 'information_schema', '` + DDLSchema + `') AND n.nspname NOT LIKE 'pg\_toast%'
  LOOP
    decision := ` + decisionSQL(src, "rel.nspname || '.' || rel.relname") + `;
    IF decision = 'exclude' THEN
      CONTINUE;
    END IF;
    IF decision = 'new' THEN
      decision := CASE WHEN new_full THEN 'full' ELSE 'leave_out' END;
    END IF;
    usable := rel.relreplident = 'f' OR (rel.relreplident = 'd' AND rel.has_pk) OR (rel.relreplident = 'i' AND rel.has_ident_index);
    IF NOT usable AND decision = 'full' AND rel.relreplident <> 'n' THEN
      INSERT INTO ` + IdentityTable + ` (relid, schema_name, table_name, previous)
        VALUES (rel.oid, rel.nspname, rel.relname, rel.relreplident::text) ON CONFLICT (relid) DO NOTHING;
      EXECUTE format('ALTER TABLE %I.%I REPLICA IDENTITY FULL', rel.nspname, rel.relname);
      usable := true;
    END IF;
    IF rel.via_root THEN
      -- Published through its root: never listed itself.
      IF NOT usable THEN
        RAISE WARNING 'btfu: partition %.% has no usable replica identity; btfu cannot leave it out of its root''s publication: set REPLICA IDENTITY FULL on it or add a primary key to its root', rel.nspname, rel.relname;
      END IF;
      IF rel.oid = ANY (attached) AND NOT rel.listed AND NOT rel.oid = ANY (coalesce(created_rels, '{}')) THEN
        -- An existing table attached under a published root: its earlier
        -- rows are not in the stream. Published via the root, its changes
        -- carry the root's name: the root joins with it.
        FOR r IN SELECT rel.nspname, rel.relname UNION ALL SELECT rn.nspname, rc.relname FROM pg_class rc
            JOIN pg_namespace rn ON rn.oid = rc.relnamespace WHERE viaroot AND rc.oid = pg_partition_root(rel.oid) LOOP
          msg_prefix := '` + TableMessagePrefix + `'; msg_content := jsonb_build_object('v', 1, 'action', 'joined', 'schema', r.nspname, 'table', r.relname)::text; RETURN NEXT;
        END LOOP;
      END IF;
      CONTINUE;
    END IF;
    IF usable AND NOT rel.listed THEN
      PERFORM set_config('lock_timeout', '200ms', true);
      EXECUTE format('ALTER PUBLICATION %s ADD TABLE ONLY %I.%I', pubident, rel.nspname, rel.relname);
      PERFORM set_config('lock_timeout', saved_lock_timeout, true);
      IF NOT rel.oid = ANY (coalesce(created_rels, '{}')) AND NOT rel.oid = ANY (taken) AND NOT rel.oid = ANY (detached) THEN
        -- An existing table joins: its earlier rows are not in the stream,
        -- nor those of its partitions, which join through it.
        FOR r IN SELECT n.nspname, c.relname FROM pg_partition_tree(rel.oid) t JOIN pg_class c ON c.oid = t.relid
            JOIN pg_namespace n ON n.oid = c.relnamespace UNION ALL SELECT rel.nspname, rel.relname WHERE rel.relkind <> 'p' LOOP
          msg_prefix := '` + TableMessagePrefix + `'; msg_content := jsonb_build_object('v', 1, 'action', 'joined', 'schema', r.nspname, 'table', r.relname)::text; RETURN NEXT;
        END LOOP;
      END IF;
      IF create_sql IS NOT NULL AND rel.oid = rels[1] THEN
        -- The rows of CREATE TABLE AS / SELECT INTO: the trigger function
        -- emits them, streaming, outside any subtransaction.
        msg_prefix := 'rows'; msg_content := jsonb_build_object('schema', rel.nspname, 'table', rel.relname)::text; RETURN NEXT;
      END IF;
    ELSIF NOT usable AND NOT rel.listed AND (rel.oid = ANY (coalesce(created_rels, '{}')) OR rel.oid = ANY (detached)) THEN
      -- Left out from its first row: said in the stream, so restores name it.
      msg_prefix := '` + TableMessagePrefix + `'; msg_content := jsonb_build_object('v', 1, 'action', 'left_out', 'schema', rel.nspname, 'table', rel.relname)::text; RETURN NEXT;
    ELSIF NOT usable AND rel.listed THEN
      PERFORM set_config('lock_timeout', '200ms', true);
      EXECUTE format('ALTER PUBLICATION %s DROP TABLE ONLY %I.%I', pubident, rel.nspname, rel.relname);
      PERFORM set_config('lock_timeout', saved_lock_timeout, true);
      msg_prefix := '` + TableMessagePrefix + `'; msg_content := jsonb_build_object('v', 1, 'action', 'left', 'schema', rel.nspname, 'table', rel.relname)::text; RETURN NEXT;
      RAISE WARNING 'btfu: table %.% lost its replica identity and is no longer backed up; add a primary key, or list it in replica_identity_full', rel.nspname, rel.relname;
    END IF;
  END LOOP;
  END IF;
  EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'btfu could not update publication % for this statement (%: %); the statement went through, and btfu catches up within a minute', pubname, SQLSTATE, SQLERRM;
  END;
END
$btfu$`
}

// decisionSQL is a SQL expression deciding a table from the config's
// patterns, as decide() does: 'exclude', 'full' (replica_identity_full),
// or 'new' (the tables_without_key choice applies when it has no
// usable identity). name is a SQL expression giving schema.table.
func decisionSQL(src *config.Source, name string) string {
	var b strings.Builder
	b.WriteString("CASE")
	if len(src.IncludeTables) > 0 {
		b.WriteString(" WHEN NOT (" + patternsSQL(src.IncludeTables, name) + ") THEN 'exclude'")
	}
	if len(src.ExcludeTables) > 0 {
		b.WriteString(" WHEN " + patternsSQL(src.ExcludeTables, name) + " THEN 'exclude'")
	}
	if len(src.ReplicaIdentityFull) > 0 {
		b.WriteString(" WHEN " + patternsSQL(src.ReplicaIdentityFull, name) + " THEN 'full'")
	}
	if b.Len() == len("CASE") {
		return "'new'"
	}
	b.WriteString(" ELSE 'new' END")
	return b.String()
}

func patternsSQL(patterns []string, name string) string {
	var parts []string
	for _, p := range patterns {
		parts = append(parts, name+" ~ "+quoteLiteral(globRegexp(p)))
	}
	return strings.Join(parts, " OR ")
}

// globRegexp turns a path.Match pattern (as the config's table patterns
// use) into an anchored POSIX regular expression with the same meaning.
func globRegexp(p string) string {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch c {
		case '*':
			b.WriteString("[^/]*")
		case '?':
			b.WriteString("[^/]")
		case '\\':
			if i+1 < len(p) {
				i++
				b.WriteString(regexp.QuoteMeta(string(p[i])))
			}
		case '[':
			j := strings.IndexByte(p[i+1:], ']')
			if j < 0 {
				b.WriteString(`\[`)
				continue
			}
			class := p[i+1 : i+1+j]
			if strings.HasPrefix(class, "^") {
				b.WriteString("[^" + strings.ReplaceAll(class[1:], `\`, `\\`) + "]")
			} else {
				b.WriteString("[" + strings.ReplaceAll(class, `\`, `\\`) + "]")
			}
			i += j + 1
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return b.String()
}

// ddlKeywords are the first words of a client statement that is itself
// DDL; replay finds the DDL to run in such a query's text (see
// restore.ddlStatements, which keeps the same list).
var ddlKeywords = []string{"CREATE", "ALTER", "DROP", "COMMENT", "GRANT", "REVOKE", "SECURITY", "REFRESH", "IMPORT"}

// nestedSeenSetting carries, within a transaction, what the capture
// already saw of the tables DDL touched (columns, constraints and
// inheritance links created or changed in the transaction, with a digest
// of their definition), so a later command inside a function or DO block
// rebuilds only what it added, and notices what it changed.
const nestedSeenSetting = "btfu.nested_seen"

// mineSQL is a SQL expression telling whether the catalog row version
// with xmin x (a column name) was written by the running transaction or
// one of its subtransactions (a DO block's EXCEPTION clause runs one).
// The trigger runs in the transaction of the DDL and sees no other
// transaction's uncommitted rows. An xid is placed in the epoch of top
// (the transaction's own, which its subtransactions' follow): one that
// does not follow top (frozen, or older) is not the transaction's; one at
// or past the snapshot's xmax can only be its own (another's would be
// invisible); one below it is asked of txid_status, which is safe there.
func mineSQL(x string) string {
	full := "(top + ((" + x + "::text::bigint - top % 4294967296 + 4294967296) % 4294967296))"
	return "(CASE WHEN " + x + "::text::bigint <= 2 OR " + full + " >= top + 2147483648 THEN false WHEN " + full + " >= hi THEN true ELSE txid_status(" + full + ") = 'in progress' END)"
}

// columnSpecSQL is a column's definition as CREATE TABLE and ADD COLUMN
// take it, from a (pg_attribute), t (its pg_type) and ad (its pg_attrdef,
// left joined). Names and types come out schema-qualified: the core runs
// with search_path pg_catalog, pg_temp.
const columnSpecSQL = `format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod))
  || CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END
  || CASE WHEN a.attgenerated = 's' THEN ' GENERATED ALWAYS AS (' || pg_get_expr(ad.adbin, ad.adrelid) || ') STORED'
          WHEN a.attgenerated = 'v' THEN ' GENERATED ALWAYS AS (' || pg_get_expr(ad.adbin, ad.adrelid) || ') VIRTUAL'
          WHEN ad.adbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(ad.adbin, ad.adrelid) ELSE '' END
  || CASE a.attidentity WHEN 'a' THEN ' GENERATED ALWAYS AS IDENTITY' WHEN 'd' THEN ' GENERATED BY DEFAULT AS IDENTITY' ELSE '' END
  || CASE WHEN a.attnotnull THEN ' NOT NULL' ELSE '' END`

// tableDefSQL selects into def the CREATE TABLE statement of table cmd.objid
// as the catalog holds it at the end of the command.
const tableDefSQL = `SELECT format('CREATE %sTABLE %I.%I ', CASE c.relpersistence WHEN 'u' THEN 'UNLOGGED ' ELSE '' END, n.nspname, c.relname)
    || CASE WHEN c.relispartition
         THEN format('PARTITION OF %I.%I', pn.nspname, pc.relname) || coalesce(' (' || y.cons || ')', '') || ' ' || pg_get_expr(c.relpartbound, c.oid)
         ELSE '(' || concat_ws(', ', x.cols, y.cons) || ')' || coalesce(' INHERITS (' || z.inh || ')', '') END
    || CASE WHEN c.relkind = 'p' THEN ' PARTITION BY ' || pg_get_partkeydef(c.oid) ELSE '' END
    || CASE WHEN c.relkind = 'r' AND am.amname IS DISTINCT FROM 'heap' THEN format(' USING %I', am.amname) ELSE '' END
    || CASE WHEN c.reloptions IS NOT NULL THEN ' WITH (' || array_to_string(c.reloptions, ', ') || ')' ELSE '' END
  INTO def
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_am am ON am.oid = c.relam
  LEFT JOIN pg_inherits pi ON c.relispartition AND pi.inhrelid = c.oid
  LEFT JOIN pg_class pc ON pc.oid = pi.inhparent
  LEFT JOIN pg_namespace pn ON pn.oid = pc.relnamespace
  CROSS JOIN LATERAL (SELECT string_agg(` + columnSpecSQL + `, ', ' ORDER BY a.attnum) AS cols
      FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
      WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped AND a.attislocal) x
  CROSS JOIN LATERAL (SELECT string_agg(format('CONSTRAINT %I %s', k.conname, pg_get_constraintdef(k.oid)), ', '
        ORDER BY CASE k.contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 ELSE 2 END, k.conname) AS cons
      FROM pg_constraint k WHERE k.conrelid = c.oid AND k.contype IN ('p', 'u', 'c', 'x', 'f') AND k.conislocal AND k.conparentid = 0) y
  CROSS JOIN LATERAL (SELECT string_agg(format('%I.%I', hn.nspname, hc.relname), ', ' ORDER BY i.inhseqno) AS inh
      FROM pg_inherits i JOIN pg_class hc ON hc.oid = i.inhparent JOIN pg_namespace hn ON hn.oid = hc.relnamespace
      WHERE i.inhrelid = c.oid AND NOT c.relispartition) z
  WHERE c.oid = cmd.objid`

// typeDefSQL selects into def the CREATE TYPE / CREATE DOMAIN statement of
// type cmd.objid: enums with their labels in order, composite types,
// domains with their constraints, ranges. Base types (C functions) are
// left NULL.
const typeDefSQL = `SELECT CASE t.typtype
    WHEN 'e' THEN format('CREATE TYPE %I.%I AS ENUM (%s)', n.nspname, t.typname,
      (SELECT coalesce(string_agg(quote_literal(l.enumlabel), ', ' ORDER BY l.enumsortorder), '') FROM pg_enum l WHERE l.enumtypid = t.oid))
    WHEN 'c' THEN format('CREATE TYPE %I.%I AS (%s)', n.nspname, t.typname,
      (SELECT coalesce(string_agg(format('%I %s', a.attname, format_type(a.atttypid, a.atttypmod))
           || CASE WHEN a.attcollation <> 0 AND a.attcollation <> at.typcollation THEN ' COLLATE ' || a.attcollation::regcollation::text ELSE '' END, ', ' ORDER BY a.attnum), '')
         FROM pg_attribute a JOIN pg_type at ON at.oid = a.atttypid WHERE a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped))
    WHEN 'd' THEN format('CREATE DOMAIN %I.%I AS %s', n.nspname, t.typname, format_type(t.typbasetype, t.typtypmod))
      || CASE WHEN t.typcollation <> 0 AND t.typcollation <> bt.typcollation THEN ' COLLATE ' || t.typcollation::regcollation::text ELSE '' END
      || CASE WHEN t.typdefaultbin IS NOT NULL THEN ' DEFAULT ' || pg_get_expr(t.typdefaultbin, 0) ELSE '' END
      || CASE WHEN t.typnotnull THEN ' NOT NULL' ELSE '' END
      || (SELECT coalesce(string_agg(format(' CONSTRAINT %I %s', k.conname, pg_get_constraintdef(k.oid)), '' ORDER BY k.conname), '')
            FROM pg_constraint k WHERE k.contypid = t.oid AND k.contype = 'c')
    WHEN 'r' THEN (SELECT format('CREATE TYPE %I.%I AS RANGE (SUBTYPE = %s, SUBTYPE_OPCLASS = %I.%I', n.nspname, t.typname, format_type(rng.rngsubtype, NULL), opn.nspname, op.opcname)
        || CASE WHEN rng.rngcollation <> 0 THEN ', COLLATION = ' || rng.rngcollation::regcollation::text ELSE '' END
        || CASE WHEN rng.rngcanonical <> 0 THEN ', CANONICAL = ' || rng.rngcanonical::regproc::text ELSE '' END
        || CASE WHEN rng.rngsubdiff <> 0 THEN ', SUBTYPE_DIFF = ' || rng.rngsubdiff::regproc::text ELSE '' END || ')'
      FROM pg_range rng JOIN pg_opclass op ON op.oid = rng.rngsubopc JOIN pg_namespace opn ON opn.oid = op.opcnamespace WHERE rng.rngtypid = t.oid)
    END
  INTO def
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
  WHERE t.oid = cmd.objid`

// commentKeywords map pg_event_trigger_ddl_commands' object types to the
// word COMMENT ON takes with their identity.
const commentKeywordsSQL = `CASE cmd.object_type
    WHEN 'table' THEN 'TABLE' WHEN 'view' THEN 'VIEW' WHEN 'materialized view' THEN 'MATERIALIZED VIEW' WHEN 'index' THEN 'INDEX'
    WHEN 'sequence' THEN 'SEQUENCE' WHEN 'foreign table' THEN 'FOREIGN TABLE' WHEN 'type' THEN 'TYPE' WHEN 'composite type' THEN 'TYPE'
    WHEN 'domain' THEN 'DOMAIN' WHEN 'function' THEN 'FUNCTION' WHEN 'procedure' THEN 'PROCEDURE' WHEN 'aggregate' THEN 'AGGREGATE'
    WHEN 'schema' THEN 'SCHEMA' WHEN 'trigger' THEN 'TRIGGER' WHEN 'policy' THEN 'POLICY' WHEN 'rule' THEN 'RULE'
    WHEN 'table constraint' THEN 'CONSTRAINT' WHEN 'table column' THEN 'COLUMN' WHEN 'view column' THEN 'COLUMN'
    WHEN 'materialized view column' THEN 'COLUMN' WHEN 'foreign table column' THEN 'COLUMN' WHEN 'composite type column' THEN 'COLUMN'
  END`

// nestedSQL is the part of the core that deals with DDL run inside a
// function, procedure or DO block ("nested"): the client's statement
// (current_query()) then holds no DDL of its own for replay to run, so
// the command is rebuilt from the catalog at ddl_command_end, with
// PostgreSQL's own deparsers where they exist, into defs; what it cannot
// rebuild goes to unrebuilt, which restores report. A query is nested when
// its first word, after blanks and comments, is not one of ddlKeywords: a
// query string mixing DDL statements with calls that run DDL ("CREATE
// TABLE a (); SELECT f()") counts as DDL, and f's commands are then not
// rebuilt.
//
// Outside nested commands it only notes, in nestedSeenSetting, the state
// of the tables the command created or altered, so a nested ALTER TABLE
// later in the transaction tells what it added.
func nestedSQL() string {
	kw := make([]string, len(ddlKeywords))
	for i, k := range ddlKeywords {
		kw[i] = quoteLiteral(k)
	}
	return `
  -- Nested: the client's statement is not DDL itself.
  q := coalesce(current_query(), '');
  LOOP
    q := ltrim(q, E' \t\r\n\f');
    IF left(q, 2) = '--' THEN
      q := CASE WHEN position(E'\n' IN q) > 0 THEN substr(q, position(E'\n' IN q) + 1) ELSE '' END;
    ELSIF left(q, 2) = '/*' THEN
      q := CASE WHEN position('*/' IN q) > 0 THEN substr(q, position('*/' IN q) + 2) ELSE '' END;
    ELSE
      EXIT;
    END IF;
  END LOOP;
  nested := coalesce(upper(substring(q FROM '^[A-Za-z_]+')), '') NOT IN (` + strings.Join(kw, ", ") + `)
    -- A query string of several statements may begin with another (SET
    -- ROLE …; CREATE …): rebuilt too, and replay takes its text when it
    -- holds DDL.
    OR rtrim(q, E'; \t\r\n\f') ~ ';';
  top := txid_current();
  hi := txid_snapshot_xmax(txid_current_snapshot());

  -- What a nested DROP removed that replay's DROP … IF EXISTS (from
  -- "dropped") does not cover: columns and constraints of a table.
  IF nested AND dropped IS NOT NULL THEN
    FOR r IN SELECT x->>'type' AS type, x->>'identity' AS identity, coalesce((x->>'temp')::boolean, false) AS temp,
               ARRAY(SELECT jsonb_array_elements_text(coalesce(x->'names', '[]'))) AS names
             FROM jsonb_array_elements(dropped) x LOOP
      CONTINUE WHEN r.temp;
      IF r.type = 'table column' AND cardinality(r.names) = 3 THEN
        defs := defs || format('ALTER TABLE IF EXISTS %I.%I DROP COLUMN IF EXISTS %I', r.names[1], r.names[2], r.names[3]);
      ELSIF r.type = 'table constraint' AND cardinality(r.names) = 3 THEN
        defs := defs || format('ALTER TABLE IF EXISTS %I.%I DROP CONSTRAINT IF EXISTS %I', r.names[1], r.names[2], r.names[3]);
      ELSIF r.type NOT IN ('table', 'view', 'materialized view', 'sequence', 'index', 'foreign table', 'type', 'composite type', 'domain',
                           'function', 'procedure', 'aggregate', 'schema', 'trigger', 'policy', 'rule', 'default value') THEN
        -- replay drops those with DROP <type> IF EXISTS <identity>
        unrebuilt := unrebuilt || format('DROP %s %s', r.type, r.identity);
      END IF;
    END LOOP;
  END IF;

  FOR cmd IN SELECT * FROM pg_event_trigger_ddl_commands() c WHERE NOT c.in_extension LOOP
    def := NULL;
    handled := false;
    alter_rel := NULL;
    IF cmd.schema_name = 'pg_temp' OR cmd.schema_name LIKE 'pg\_temp\_%' THEN
      CONTINUE;
    END IF;
    IF cmd.classid = 'pg_class'::regclass THEN
      SELECT c.relkind, c.relpersistence = 't' INTO r_kind, r_temp FROM pg_class c WHERE c.oid = cmd.objid;
      CONTINUE WHEN r_temp;
      IF cmd.command_tag IN ('CREATE TABLE', 'ALTER TABLE') AND r_kind IN ('r', 'p') THEN
        -- Noted in every case (nested or not), rebuilt when nested.
        alter_rel := cmd.objid;
      END IF;
    END IF;
    IF NOT nested AND tag NOT IN ('CREATE TABLE', 'REFRESH MATERIALIZED VIEW') THEN
      -- (A top-level CREATE TABLE is rebuilt too, as a fallback: its text
      -- may name what the target lacks, as LIKE a temporary table; and a
      -- REFRESH, whose materialized view may have been made where no
      -- event trigger fires: EXPLAIN ANALYZE CREATE MATERIALIZED VIEW.)
      NULL;
    ELSIF cmd.command_tag = 'COMMENT' THEN
      handled := true;
      def := ` + commentKeywordsSQL + `;
      IF def IS NOT NULL THEN
        def := format('COMMENT ON %s %s IS %s', def, cmd.object_identity,
          coalesce((SELECT quote_literal(description) FROM pg_description WHERE objoid = cmd.objid AND classoid = cmd.classid AND objsubid = cmd.objsubid), 'NULL'));
      ELSE
        handled := false;
      END IF;
    ELSIF cmd.command_tag IN ('CREATE TABLE AS', 'SELECT INTO') THEN
      handled := true; -- "create" holds its definition
    ELSIF cmd.classid = 'pg_class'::regclass THEN
      IF cmd.command_tag = 'CREATE TABLE' AND r_kind IN ('r', 'p') THEN
        handled := true;
        ` + tableDefSQL + `;
      ELSIF cmd.command_tag = 'ALTER TABLE' AND r_kind IN ('r', 'p') THEN
        handled := true; -- below
      ELSIF cmd.command_tag = 'CREATE SEQUENCE' AND r_kind = 'S' THEN
        handled := true;
        -- An identity column's sequence comes with the column.
        IF NOT EXISTS (SELECT 1 FROM pg_depend WHERE classid = 'pg_class'::regclass AND objid = cmd.objid AND deptype = 'i') THEN
          SELECT format('CREATE SEQUENCE %I.%I AS %s INCREMENT BY %s MINVALUE %s MAXVALUE %s START WITH %s CACHE %s%s', n.nspname, c.relname,
                   format_type(s.seqtypid, NULL), s.seqincrement, s.seqmin, s.seqmax, s.seqstart, s.seqcache, CASE WHEN s.seqcycle THEN ' CYCLE' ELSE '' END)
            INTO def FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE s.seqrelid = cmd.objid;
        END IF;
      ELSIF cmd.command_tag = 'ALTER SEQUENCE' AND r_kind = 'S' AND tag <> 'ALTER SEQUENCE' THEN
        -- A serial column's sequence, owned by its column.
        handled := true;
        SELECT format('ALTER SEQUENCE %I.%I OWNED BY %I.%I.%I', sn.nspname, s.relname, tn.nspname, t.relname, a.attname) INTO def
          FROM pg_depend dep JOIN pg_class s ON s.oid = dep.objid JOIN pg_namespace sn ON sn.oid = s.relnamespace
          JOIN pg_class t ON t.oid = dep.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace
          JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = dep.refobjsubid
          WHERE dep.classid = 'pg_class'::regclass AND dep.objid = cmd.objid AND dep.refclassid = 'pg_class'::regclass AND dep.deptype = 'a' AND dep.refobjsubid > 0;
      ELSIF cmd.command_tag = 'CREATE INDEX' AND r_kind IN ('i', 'I') THEN
        handled := true;
        -- Indexes of a constraint come with it; a partition's with its root's.
        SELECT CASE WHEN c.relkind = 'I' THEN regexp_replace(pg_get_indexdef(c.oid), ' ON ONLY ', ' ON ') ELSE pg_get_indexdef(c.oid) END INTO def
          FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
          WHERE c.oid = cmd.objid AND NOT c.relispartition
            AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid AND k.conrelid = i.indrelid AND k.contype IN ('p', 'u', 'x'));
      ELSIF cmd.command_tag = 'CREATE VIEW' AND r_kind = 'v' THEN
        handled := true;
        SELECT format('CREATE OR REPLACE VIEW %I.%I%s AS %s', n.nspname, c.relname,
                 CASE WHEN c.reloptions IS NOT NULL THEN ' WITH (' || array_to_string(c.reloptions, ', ') || ')' ELSE '' END,
                 regexp_replace(pg_get_viewdef(c.oid), ';\s*$', ''))
          INTO def FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = cmd.objid;
      ELSIF cmd.command_tag = 'CREATE MATERIALIZED VIEW' AND r_kind = 'm' THEN
        -- The target computes its rows from tables equal to the source's
        -- at this point.
        handled := true;
        SELECT ` + matviewDefSQL("WITH %sDATA") + `, CASE WHEN c.relispopulated THEN '' ELSE 'NO ' END)
          INTO def FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = cmd.objid;
      ELSIF cmd.command_tag = 'REFRESH MATERIALIZED VIEW' AND r_kind = 'm' THEN
        handled := true;
        IF NOT nested THEN
          -- The fallback: the view made as it stands, if the target lacks it.
          SELECT ` + matviewDefSQL("WITH NO DATA") + `)
            INTO def FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = cmd.objid;
          defs := defs || replace(def, 'CREATE MATERIALIZED VIEW ', 'CREATE MATERIALIZED VIEW IF NOT EXISTS ');
        END IF;
        SELECT format('REFRESH MATERIALIZED VIEW %I.%I%s', n.nspname, c.relname, CASE WHEN c.relispopulated THEN '' ELSE ' WITH NO DATA' END) INTO def
          FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = cmd.objid;
      END IF;
    ELSIF cmd.classid = 'pg_proc'::regclass AND cmd.command_tag IN ('CREATE FUNCTION', 'CREATE PROCEDURE') THEN
      SELECT pg_get_functiondef(p.oid) INTO def FROM pg_proc p WHERE p.oid = cmd.objid AND p.prokind IN ('f', 'p', 'w');
      handled := def IS NOT NULL;
    ELSIF cmd.classid = 'pg_type'::regclass AND cmd.command_tag IN ('CREATE TYPE', 'CREATE DOMAIN') THEN
      ` + typeDefSQL + `;
      handled := def IS NOT NULL;
    ELSIF cmd.classid = 'pg_type'::regclass AND cmd.command_tag = 'ALTER TYPE' AND (SELECT typtype FROM pg_type WHERE oid = cmd.objid) = 'e' THEN
      -- An enum's labels, each added where it stands (ADD VALUE IF NOT
      -- EXISTS is a no-op for those the target has).
      handled := true;
      FOR r IN SELECT l.enumlabel, lag(l.enumlabel) OVER w AS prev, lead(l.enumlabel) OVER w AS next
               FROM pg_enum l WHERE l.enumtypid = cmd.objid WINDOW w AS (ORDER BY l.enumsortorder) ORDER BY l.enumsortorder LOOP
        CONTINUE WHEN r.prev IS NULL AND r.next IS NULL;
        defs := defs || format('ALTER TYPE %s ADD VALUE IF NOT EXISTS %L %s', cmd.object_identity, r.enumlabel,
          CASE WHEN r.prev IS NULL THEN format('BEFORE %L', r.next) ELSE format('AFTER %L', r.prev) END);
      END LOOP;
    ELSIF cmd.classid = 'pg_trigger'::regclass AND cmd.command_tag = 'CREATE TRIGGER' THEN
      SELECT pg_get_triggerdef(g.oid) INTO def FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
        WHERE g.oid = cmd.objid AND c.relpersistence <> 't';
      handled := true;
    ELSIF cmd.classid = 'pg_rewrite'::regclass AND cmd.command_tag = 'CREATE RULE' THEN
      SELECT regexp_replace(pg_get_ruledef(w.oid), ';\s*$', '') INTO def FROM pg_rewrite w JOIN pg_class c ON c.oid = w.ev_class
        WHERE w.oid = cmd.objid AND c.relpersistence <> 't';
      handled := true;
    ELSIF cmd.classid = 'pg_policy'::regclass AND cmd.command_tag = 'CREATE POLICY' THEN
      SELECT format('CREATE POLICY %I ON %I.%I AS %s FOR %s TO %s', p.policyname, p.schemaname, p.tablename, p.permissive, p.cmd,
               (SELECT string_agg(CASE WHEN ro = 'public' THEN 'PUBLIC' ELSE quote_ident(ro) END, ', ') FROM unnest(p.roles::text[]) ro))
             || coalesce(' USING (' || p.qual || ')', '') || coalesce(' WITH CHECK (' || p.with_check || ')', '')
        INTO def FROM pg_policy pol JOIN pg_class c ON c.oid = pol.polrelid JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_policies p ON p.schemaname = n.nspname AND p.tablename = c.relname AND p.policyname = pol.polname
        WHERE pol.oid = cmd.objid AND c.relpersistence <> 't';
      handled := true;
    ELSIF cmd.classid = 'pg_namespace'::regclass AND cmd.command_tag = 'CREATE SCHEMA' THEN
      def := format('CREATE SCHEMA IF NOT EXISTS %I', (SELECT nspname FROM pg_namespace WHERE oid = cmd.objid));
      handled := true;
    ELSIF cmd.classid = 'pg_collation'::regclass AND cmd.command_tag = 'CREATE COLLATION' THEN
      -- Through to_jsonb: the ICU locale's column is named per major.
      SELECT format('CREATE COLLATION %I.%I (%s, deterministic = %s)', n.nspname, c.collname,
               CASE c.collprovider WHEN 'i' THEN format('provider = icu, locale = %L', coalesce(to_jsonb(c)->>'colllocale', to_jsonb(c)->>'colliculocale', c.collcollate))
                 ELSE format('provider = libc, lc_collate = %L, lc_ctype = %L', c.collcollate, c.collctype) END,
               CASE WHEN c.collisdeterministic THEN 'true' ELSE 'false' END)
        INTO def FROM pg_collation c JOIN pg_namespace n ON n.oid = c.collnamespace WHERE c.oid = cmd.objid;
      handled := def IS NOT NULL;
    END IF;
    IF def IS NOT NULL THEN
      defs := defs || def;
    END IF;
    IF nested AND NOT handled THEN
      unrebuilt := unrebuilt || format('%s %s', cmd.command_tag, cmd.object_identity);
    END IF;
    IF alter_rel IS NOT NULL THEN
` + tableScanSQL() + `
    END IF;
  END LOOP;
`
}

// matviewDefSQL is the start of a format(…) call, on pg_class c and
// pg_namespace n, that writes CREATE MATERIALIZED VIEW for c with its
// column names, options and query, ending with tail (whose %s, if any,
// takes one more argument before the closing parenthesis).
func matviewDefSQL(tail string) string {
	return `format('CREATE MATERIALIZED VIEW %I.%I (%s)%s AS %s ` + tail + `', n.nspname, c.relname,
                 (SELECT string_agg(quote_ident(a.attname), ', ' ORDER BY a.attnum) FROM pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
                 CASE WHEN c.reloptions IS NOT NULL THEN ' WITH (' || array_to_string(c.reloptions, ', ') || ')' ELSE '' END,
                 regexp_replace(pg_get_viewdef(c.oid), ';\s*$', '')`
}

// tableScanSQL, run for each table a command created or altered, notes in
// seen the columns, constraints and inheritance links the transaction
// wrote (with a digest of their definition), and, for an ALTER TABLE
// inside a function or DO block (emit), rebuilds what it added: columns
// (ADD COLUMN IF NOT EXISTS, with default, identity, generation and NOT
// NULL), constraints, partitions attached and parents inherited (the last
// two guarded, so a replay that already has them goes on). A change to a
// column or constraint that existed before the command (type, default,
// NOT NULL, rename, validation), or an ALTER TABLE in which nothing of
// this shows (options, row security, triggers enabled, detached
// partitions, …), is listed in unrebuilt.
func tableScanSQL() string {
	return `      emit := nested AND cmd.command_tag = 'ALTER TABLE' AND tag = 'ALTER TABLE';
      rebuilt := dropped IS NOT NULL AND jsonb_array_length(dropped) > 0;
      changed := false;
      SELECT format('%I.%I', n.nspname, c.relname) INTO relq FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = alter_rel;
      -- Columns added by this transaction have numbers past those of
      -- every column it did not write.
      SELECT coalesce(max(a.attnum) FILTER (WHERE NOT ` + mineSQL("a.xmin") + `), 0) INTO base
        FROM pg_attribute a WHERE a.attrelid = alter_rel AND a.attnum > 0;
      FOR r IN SELECT a.attnum, a.attislocal, ` + columnSpecSQL + ` AS spec,
                 ` + mineSQL("a.xmin") + ` OR coalesce(` + mineSQL("ad.xmin") + `, false) AS mine
               FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
               WHERE a.attrelid = alter_rel AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum LOOP
        tok := format(',a:%s:%s=', alter_rel, r.attnum);
        CONTINUE WHEN position(tok || md5(r.spec) IN seen) > 0;
        IF position(tok IN seen) > 0 THEN
          changed := true;
        ELSIF NOT r.mine THEN
          CONTINUE;
        ELSIF r.attnum > base THEN
          IF emit AND r.attislocal THEN
            defs := defs || format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS %s', relq, r.spec);
            rebuilt := true;
          END IF;
        ELSE
          changed := true;
        END IF;
        seen := seen || tok || md5(r.spec);
      END LOOP;
      FOR r IN SELECT k.oid, k.conname, pg_get_constraintdef(k.oid) AS spec, ` + mineSQL("k.xmin") + ` AS mine
               FROM pg_constraint k WHERE k.conrelid = alter_rel AND k.contype IN ('p', 'u', 'c', 'x', 'f') AND k.conislocal AND k.conparentid = 0
               ORDER BY CASE k.contype WHEN 'p' THEN 0 WHEN 'u' THEN 1 ELSE 2 END, k.oid LOOP
        tok := format(',k:%s=', r.oid);
        CONTINUE WHEN position(tok || md5(r.conname || ' ' || r.spec) IN seen) > 0;
        IF position(tok IN seen) > 0 THEN
          changed := true;
        ELSIF NOT r.mine THEN
          CONTINUE;
        ELSIF emit THEN
          defs := defs || format('DO $btfu_def$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint WHERE conrelid = %L::regclass AND conname = %L) THEN ALTER TABLE %s ADD CONSTRAINT %I %s; END IF; END $btfu_def$',
            relq, r.conname, relq, r.conname, r.spec);
          rebuilt := true;
        END IF;
        seen := seen || tok || md5(r.conname || ' ' || r.spec);
      END LOOP;
      FOR r IN SELECT i.inhrelid, i.inhparent, ch.relispartition, ` + mineSQL("i.xmin") + ` AS mine,
                 format('%I.%I', chn.nspname, ch.relname) AS child, format('%I.%I', pn.nspname, p.relname) AS parent, pg_get_expr(ch.relpartbound, ch.oid) AS bound
               FROM pg_inherits i JOIN pg_class ch ON ch.oid = i.inhrelid JOIN pg_namespace chn ON chn.oid = ch.relnamespace
               JOIN pg_class p ON p.oid = i.inhparent JOIN pg_namespace pn ON pn.oid = p.relnamespace
               WHERE i.inhparent = alter_rel OR i.inhrelid = alter_rel LOOP
        tok := format(',i:%s:%s.', r.inhrelid, r.inhparent);
        CONTINUE WHEN position(tok IN seen) > 0 OR NOT r.mine;
        IF emit AND r.relispartition AND r.inhparent = alter_rel THEN
          defs := defs || format('DO $btfu_def$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhrelid = %L::regclass) THEN ALTER TABLE %s ATTACH PARTITION %s %s; END IF; END $btfu_def$',
            r.child, r.parent, r.child, r.bound);
          rebuilt := true;
        ELSIF emit AND NOT r.relispartition AND r.inhrelid = alter_rel THEN
          defs := defs || format('DO $btfu_def$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_inherits WHERE inhrelid = %L::regclass AND inhparent = %L::regclass) THEN ALTER TABLE %s INHERIT %s; END IF; END $btfu_def$',
            r.child, r.parent, r.child, r.parent);
          rebuilt := true;
        END IF;
        seen := seen || tok;
      END LOOP;
      IF emit AND changed THEN
        unrebuilt := unrebuilt || format('ALTER TABLE %s (a change to columns or constraints it had before: a type change or a dropped column follows from the stream at the table''s next row change; defaults, NOT NULL and renames do not)', cmd.object_identity);
      ELSIF emit AND NOT rebuilt AND NOT alter_rel = ANY (scanned) THEN
        -- (A table met again in the same firing, as ADD COLUMN … serial
        -- collects a second ALTER TABLE, has nothing new: not unrebuilt.)
        unrebuilt := unrebuilt || format('ALTER TABLE %s', cmd.object_identity);
      END IF;
      scanned := scanned || alter_rel;`
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// corePublication reads which publication the installed DDL-capture core
// keeps ("" when none is installed): the core embeds one source's
// publication and table rules.
var corePublicationRE = regexp.MustCompile(`pubname constant text := '((?:[^']|'')*)';`)

// OtherCapturePublication returns the publication of another btfu source
// whose DDL capture is installed on this database, or "" when the capture
// is absent, is src's, or serves a publication that no longer exists (an
// unregistered source's leftovers, which registration may take over).
//
// One database has one DDL-capture trigger and one core: a second source
// would replace the first's core, and the first's publication would then
// miss new tables from their creating transaction, and an ALTER TABLE …
// SET UNLOGGED of one of its tables would fail for the application.
func OtherCapturePublication(ctx context.Context, conn *pgx.Conn, src *config.Source) (string, error) {
	var body string
	err := conn.QueryRow(ctx, `SELECT coalesce((SELECT p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
		WHERE n.nspname = $1 AND p.proname = $2), '')`, DDLSchema, strings.TrimPrefix(DDLCore, DDLSchema+".")).Scan(&body)
	if err != nil {
		return "", fmt.Errorf("read the DDL-capture core: %w", err)
	}
	m := corePublicationRE.FindStringSubmatch(body)
	if m == nil {
		return "", nil
	}
	pub := strings.ReplaceAll(m[1], "''", "'")
	if pub == src.Publication {
		return "", nil
	}
	var exists bool
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)`, pub).Scan(&exists); err != nil {
		return "", fmt.Errorf("look for publication %s: %w", pub, err)
	}
	if !exists {
		return "", nil
	}
	return pub, nil
}

// ErrCaptureServesOther is returned when the database's DDL capture
// belongs to another btfu source.
var ErrCaptureServesOther = errors.New("DDL capture on this database serves another btfu source")

func CaptureServesOtherErr(db, pub, own string) error {
	return fmt.Errorf("%w: database %s is already protected by the btfu source that uses publication %s (this btfu, or another one); btfu protects a database with one source, because its DDL-capture trigger keeps one publication's table list. Fix: protect it with that source, or run `btfu unregister` for that source first (it removes its slot, publication and the DDL-capture objects), or give this source publication = %q if it is the same source renamed",
		ErrCaptureServesOther, db, pub, pub)
}

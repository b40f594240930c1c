package probe

import (
	"fmt"
	"regexp"
	"strings"

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
	droppedSetting   = "btfu.dropped"
	DDLStartTrigger  = "btfu_capture_ddl_start"
	DDLStartFunction = "btfu.capture_ddl_start"
	DDLStartCore     = "btfu.capture_ddl_start_core"
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
	// adds "dropped".
	ddlCaptureVersion = 3
)

// ddlObjects names what DDL capture puts on the source, for the plan.
func ddlObjects() []string {
	return []string{
		"schema " + DDLSchema,
		"table " + IdentityTable + " (tables btfu set to REPLICA IDENTITY FULL)",
		"function " + DDLFunction + "()",
		"function " + DDLCore + "(text, text) SECURITY DEFINER (keeps the publication's table list)",
		"event trigger " + DDLTrigger + " ON ddl_command_end",
		"function " + DDLStartFunction + "(), " + DDLStartCore + "() SECURITY DEFINER, event trigger " + DDLStartTrigger + " ON ddl_command_start WHEN TAG IN ('ALTER TABLE') (takes a table out of the publication before SET UNLOGGED)",
		"function " + DDLDropFunction + "(), event trigger " + DDLDropTrigger + " ON sql_drop (notes which dropped objects were temporary)",
	}
}

// ddlStatements create (or bring up to date) the DDL-capture objects for
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
func ddlStatements(src *config.Source) []string {
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
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '` + DDLStartTrigger + `') THEN
    CREATE EVENT TRIGGER ` + DDLStartTrigger + ` ON ddl_command_start WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION ` + DDLStartFunction + `();
  END IF;
  IF NOT EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = '` + DDLDropTrigger + `') THEN
    CREATE EVENT TRIGGER ` + DDLDropTrigger + ` ON sql_drop EXECUTE FUNCTION ` + DDLDropFunction + `();
  END IF;
END $btfu$`,
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
  r record;
BEGIN
  IF pg_catalog.current_setting('` + InternalSetting + `', true) = 'on' THEN
    RETURN;
  END IF;
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
  -- Row text in forms every server reads back the same, whatever the
  -- user's session settings; put back after the rows.
  IF '` + "rows" + `' = ANY (prefixes) THEN
    saved := ARRAY[pg_catalog.current_setting('DateStyle'), pg_catalog.current_setting('IntervalStyle'), pg_catalog.current_setting('extra_float_digits'), pg_catalog.current_setting('lc_monetary'), pg_catalog.current_setting('bytea_output')];
    PERFORM pg_catalog.set_config('DateStyle', 'ISO, MDY', true), pg_catalog.set_config('IntervalStyle', 'postgres', true),
      pg_catalog.set_config('extra_float_digits', '3', true), pg_catalog.set_config('lc_monetary', 'C', true), pg_catalog.set_config('bytea_output', 'hex', true);
  END IF;
  FOR i IN 1 .. COALESCE(pg_catalog.array_length(prefixes, 1), 0) LOOP
    IF prefixes[i] <> 'rows' THEN
      PERFORM pg_catalog.pg_logical_emit_message(true, prefixes[i], contents[i]);
      CONTINUE;
    END IF;
    -- The rows of a CREATE TABLE AS / SELECT INTO table btfu publishes,
    -- in messages of bounded size. Its creator may read it.
    target := contents[i]::jsonb;
    batch := '{}';
    FOR r IN EXECUTE pg_catalog.format('SELECT t::text AS row FROM ONLY %I.%I t', target->>'schema', target->>'table') LOOP
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
  IF saved IS NOT NULL THEN
    PERFORM pg_catalog.set_config('DateStyle', saved[1], true), pg_catalog.set_config('IntervalStyle', saved[2], true),
      pg_catalog.set_config('extra_float_digits', saved[3], true), pg_catalog.set_config('lc_monetary', saved[4], true), pg_catalog.set_config('bytea_output', saved[5], true);
  END IF;
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
    PERFORM pg_catalog.set_config('` + droppedSetting + `', COALESCE((SELECT pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
        'type', d.object_type, 'identity', d.object_identity, 'schema', d.schema_name, 'temp', d.is_temporary, 'original', true))
      FROM pg_catalog.pg_event_trigger_dropped_objects() d WHERE d.original)::text, ''), true);
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
BEGIN
  IF pg_catalog.current_setting('` + InternalSetting + `', true) = 'on' THEN
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
  IF q !~ 'set\s+unlogged' THEN
    RETURN;
  END IF;
  SELECT oid INTO pubid FROM pg_publication WHERE pubname = ` + quoteLiteral(src.Publication) + ` AND NOT puballtables;
  IF pubid IS NULL THEN
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
BEGIN
  IF dropped IS NOT NULL THEN
    PERFORM set_config('` + droppedSetting + `', '', true);
  END IF;
  -- An object is temporary when its schema is, or when the relation it
  -- belongs to is (triggers, rules, policies, constraints and defaults
  -- have no schema of their own).
  SELECT coalesce(jsonb_agg(jsonb_build_object('type', d.object_type, 'identity', d.object_identity, 'schema', d.schema_name,
           'temp', coalesce(d.schema_name = 'pg_temp' OR d.schema_name LIKE 'pg\_temp\_%', false)
             OR coalesce((SELECT c.relpersistence = 't' FROM pg_class c WHERE c.oid = d.relid), false))), '[]'::jsonb),
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

  msg_prefix := '` + DDLMessagePrefix + `'; msg_content := jsonb_strip_nulls(jsonb_build_object(
    'v', ` + fmt.Sprint(ddlCaptureVersion) + `,
    'tag', tag,
    'query', current_query(),
    'search_path', user_search_path,
    'stmt', txid_current()::text || ':' || pg_backend_pid()::text || ':' || extract(epoch FROM statement_timestamp())::text,
    'objects', objs,
    'dropped', dropped,
    'create', create_sql,
    -- btfu's own publication is not the application's schema: a restore
    -- must not recreate or change it.
    'skip', CASE WHEN tag LIKE '% PUBLICATION' AND position(pubname IN current_query()) > 0 THEN true END))::text;
  RETURN NEXT;

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
  IF rels IS NOT NULL THEN

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
      CONTINUE;
    END IF;
    IF usable AND NOT rel.listed THEN
      PERFORM set_config('lock_timeout', '200ms', true);
      EXECUTE format('ALTER PUBLICATION %s ADD TABLE ONLY %I.%I', pubident, rel.nspname, rel.relname);
      PERFORM set_config('lock_timeout', saved_lock_timeout, true);
      IF NOT rel.oid = ANY (coalesce(created_rels, '{}')) AND NOT rel.oid = ANY (taken) THEN
        -- An existing table joins: its earlier rows are not in the stream.
        msg_prefix := '` + TableMessagePrefix + `'; msg_content := jsonb_build_object('v', 1, 'action', 'joined', 'schema', rel.nspname, 'table', rel.relname)::text; RETURN NEXT;
      END IF;
      IF create_sql IS NOT NULL AND rel.oid = rels[1] THEN
        -- The rows of CREATE TABLE AS / SELECT INTO: the trigger function
        -- emits them, streaming, outside any subtransaction.
        msg_prefix := 'rows'; msg_content := jsonb_build_object('schema', rel.nspname, 'table', rel.relname)::text; RETURN NEXT;
      END IF;
    ELSIF NOT usable AND NOT rel.listed AND rel.oid = ANY (coalesce(created_rels, '{}')) THEN
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

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func quoteLiteral(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

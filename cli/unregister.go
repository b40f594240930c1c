package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/btfu/btfu/api"
	"github.com/btfu/btfu/config"
	"github.com/btfu/btfu/engine"
	"github.com/btfu/btfu/sourcedb"
	"github.com/btfu/btfu/store"
)

func unregisterCommand() command {
	return command{
		name:    "unregister",
		summary: "remove what btfu created on a source (slots, publication, DDL capture and its schema) and end its chain; stored backups are kept",
		flags: func(fs *flag.FlagSet) func(*Env, string, []string) error {
			name := sourceFlag(fs)
			yes := fs.Bool("yes", false, "do not ask for confirmation (required without a terminal)")
			identity := fs.Bool("restore-replica-identity", false, "put back the replica identity of the tables btfu set to REPLICA IDENTITY FULL (listed in "+sourcedb.IdentityTable+")")
			return func(env *Env, path string, args []string) error {
				src, cfg, err := pickSource(path, *name, args)
				if err != nil {
					return err
				}
				c, err := running(cfg)
				if err == nil {
					return fmt.Errorf("a btfu is running on this metadata (control API on %s) and streams from source %s: stop it first, then run unregister again", c.Where(), src.Name)
				}
				if !errors.Is(err, api.ErrNotRunning) {
					return err
				}
				conn, err := sourcedb.Connect(env.Ctx, src)
				if err != nil {
					return err
				}
				defer conn.Close(context.WithoutCancel(env.Ctx))
				objs, err := findObjects(env.Ctx, conn, cfg, src)
				if err != nil {
					return err
				}
				printObjects(env.Stdout, src, objs, *identity)
				if err := objs.inUse(env.Ctx, conn); err != nil {
					return err
				}
				if !objs.empty() && !*yes {
					if !isTerminal(env.Stdin) {
						return usageErr("no terminal to confirm on; pass --yes to drop these from source %s", src.Name)
					}
					fmt.Fprintf(env.Stdout, "\nDrop them from source %s? Type 'unregister' to go on: ", src.Name)
					line, _ := bufio.NewReader(env.Stdin).ReadString('\n')
					if strings.TrimSpace(line) != "unregister" {
						return errors.New("nothing dropped: not confirmed")
					}
				}
				if err := objs.drop(env.Ctx, conn, *identity, env.Stdout); err != nil {
					return err
				}
				if err := markUnregistered(env, cfg, src); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "\nsource %s unregistered; its stored backups are kept and restore as before.\n"+
					"Remove its [[source]] from %s: otherwise the next btfu start registers it again (a new chain and base backup).\n", src.Name, cfg.Path)
				return nil
			}
		},
	}
}

// sourceObjects is what btfu created on one source.
type sourceObjects struct {
	slots       []slotInfo
	publication bool
	pubName     string
	trigger     bool     // the DDL-capture event trigger
	schema      []string // the btfu schema's contents; nil when it does not exist
	hasSchema   bool
	identities  []identity // tables btfu set to REPLICA IDENTITY FULL
	sharedWith  []string   // other sources on the same database: DDL capture is theirs too
}

type slotInfo struct {
	name      string
	temporary bool
	activePID int64
}

type identity struct {
	schema, table, previous string
}

func (o *sourceObjects) empty() bool {
	return len(o.slots) == 0 && !o.publication && !o.trigger && !o.hasSchema
}

// tempSlotRE matches the name of a later base backup's temporary slot,
// <slot>_b<unix seconds> with the slot cut to fit 63 bytes (backup.go).
var tempSlotRE = regexp.MustCompile(`^(.*)_b([0-9]+)$`)

func isTempSlotOf(name, slot string) bool {
	m := tempSlotRE.FindStringSubmatch(name)
	if m == nil {
		return false
	}
	suffix := len(name) - len(m[1])
	return m[1] == slot[:min(len(slot), 63-suffix)]
}

func findObjects(ctx context.Context, conn *pgx.Conn, cfg *config.Config, src *config.Source) (*sourceObjects, error) {
	o := &sourceObjects{pubName: src.Publication}
	rows, err := conn.Query(ctx, `SELECT slot_name::text, temporary, coalesce(active_pid, 0)::bigint FROM pg_replication_slots
		WHERE database = current_database() ORDER BY slot_name`)
	if err != nil {
		return nil, fmt.Errorf("list slots: %w", err)
	}
	for rows.Next() {
		var s slotInfo
		if err := rows.Scan(&s.name, &s.temporary, &s.activePID); err != nil {
			return nil, err
		}
		if s.name == src.Slot || isTempSlotOf(s.name, src.Slot) {
			o.slots = append(o.slots, s)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list slots: %w", err)
	}
	if err := conn.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1),
		EXISTS (SELECT 1 FROM pg_event_trigger WHERE evtname = $2),
		EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $3)`, src.Publication, sourcedb.DDLTrigger, sourcedb.DDLSchema).Scan(&o.publication, &o.trigger, &o.hasSchema); err != nil {
		return nil, fmt.Errorf("look for btfu's objects: %w", err)
	}
	if o.hasSchema {
		rows, err := conn.Query(ctx, `SELECT kind || ' ' || name FROM (
			SELECT CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' WHEN 'S' THEN 'sequence' WHEN 'm' THEN 'materialized view' ELSE 'relation' END AS kind,
			       format('%I.%I', n.nspname, c.relname) AS name
			FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'S', 'm', 'p', 'f')
			UNION ALL
			SELECT 'function', p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = $1) o ORDER BY 1`, sourcedb.DDLSchema)
		if err != nil {
			return nil, fmt.Errorf("list schema %s: %w", sourcedb.DDLSchema, err)
		}
		if o.schema, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
			return nil, fmt.Errorf("list schema %s: %w", sourcedb.DDLSchema, err)
		}
		var exists bool
		if err := conn.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, sourcedb.IdentityTable).Scan(&exists); err != nil {
			return nil, err
		}
		if exists {
			rows, err := conn.Query(ctx, `SELECT schema_name, table_name, previous FROM `+sourcedb.IdentityTable+` r
				WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = r.relid AND c.relreplident = 'f') ORDER BY 1, 2`)
			if err != nil {
				return nil, fmt.Errorf("read %s: %w", sourcedb.IdentityTable, err)
			}
			for rows.Next() {
				var id identity
				if err := rows.Scan(&id.schema, &id.table, &id.previous); err != nil {
					return nil, err
				}
				o.identities = append(o.identities, id)
			}
			if err := rows.Err(); err != nil {
				return nil, fmt.Errorf("read %s: %w", sourcedb.IdentityTable, err)
			}
		}
	}
	// DDL capture is per database: another configured source on the same
	// database still needs it.
	mine, err := src.ConnConfig()
	if err != nil {
		return nil, err
	}
	for i := range cfg.Sources {
		other := &cfg.Sources[i]
		if other.Name == src.Name {
			continue
		}
		if oc, err := other.ConnConfig(); err == nil && oc.Host == mine.Host && oc.Port == mine.Port && oc.Database == mine.Database {
			o.sharedWith = append(o.sharedWith, other.Name)
		}
	}
	return o, nil
}

func (o *sourceObjects) keepDDL() bool { return len(o.sharedWith) > 0 }

func printObjects(w io.Writer, src *config.Source, o *sourceObjects, restoreIdentity bool) {
	fmt.Fprintf(w, "btfu's objects on source %s (%s):\n", src.Name, src.Describe())
	if o.empty() {
		fmt.Fprintln(w, "  none")
		return
	}
	for _, s := range o.slots {
		what := "main slot"
		if s.name != src.Slot {
			what = "slot of a later base backup"
		}
		fmt.Fprintf(w, "  replication slot %s (%s)\n", s.name, what)
	}
	if o.publication {
		fmt.Fprintf(w, "  publication %s\n", o.pubName)
	}
	if o.keepDDL() {
		fmt.Fprintf(w, "  DDL capture (event trigger %s, schema %s): kept, source(s) %s use the same database\n", sourcedb.DDLTrigger, sourcedb.DDLSchema, strings.Join(o.sharedWith, ", "))
	} else {
		if o.trigger {
			fmt.Fprintf(w, "  event trigger %s\n", sourcedb.DDLTrigger)
		}
		if o.hasSchema {
			fmt.Fprintf(w, "  schema %s, with everything in it:\n", sourcedb.DDLSchema)
			for _, s := range o.schema {
				fmt.Fprintf(w, "    %s\n", s)
			}
		}
	}
	switch {
	case len(o.identities) > 0 && restoreIdentity && !o.keepDDL():
		for _, id := range o.identities {
			fmt.Fprintf(w, "  table %s.%s: REPLICA IDENTITY FULL set by btfu, back to %s\n", id.schema, id.table, identityName(id.previous))
		}
	case len(o.identities) > 0:
		fmt.Fprintf(w, "  %d table(s) btfu set to REPLICA IDENTITY FULL keep it (--restore-replica-identity puts the previous identity back)\n", len(o.identities))
	}
}

func identityName(code string) string {
	switch code {
	case "d":
		return "DEFAULT"
	case "n":
		return "NOTHING"
	case "i":
		return "its replica identity index (not restored: set it with ALTER TABLE … REPLICA IDENTITY USING INDEX)"
	}
	return code
}

// inUse refuses while a session streams one of the slots: a btfu with
// its control API off, or another program. A walsender that is just
// exiting gets a few seconds. No backend is ever terminated.
func (o *sourceObjects) inUse(ctx context.Context, conn *pgx.Conn) error {
	for i, s := range o.slots {
		for deadline := time.Now().Add(5 * time.Second); s.activePID != 0 && time.Now().Before(deadline); {
			time.Sleep(200 * time.Millisecond)
			pid, _, err := sourcedb.SlotActivePID(ctx, conn, s.name)
			if err != nil {
				return err
			}
			s.activePID = int64(pid) // 0 once the slot is gone too
		}
		o.slots[i] = s
		if s.activePID != 0 {
			var who string
			_ = conn.QueryRow(ctx, `SELECT format('%s from %s', coalesce(nullif(application_name, ''), 'no application_name'), coalesce(client_addr::text, 'a local socket'))
				FROM pg_stat_activity WHERE pid = $1`, s.activePID).Scan(&who)
			return fmt.Errorf("slot %s is in use by backend PID %d (%s): stop what streams from it (a btfu whose control API is off?) and run unregister again; btfu does not terminate other sessions", s.name, s.activePID, who)
		}
	}
	return nil
}

// drop removes the objects, the DDL capture first so it does not see the
// rest, and reports each.
func (o *sourceObjects) drop(ctx context.Context, conn *pgx.Conn, restoreIdentity bool, w io.Writer) error {
	exec := func(what, sql string, args ...any) error {
		if _, err := conn.Exec(ctx, sql, args...); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		fmt.Fprintf(w, "  %s\n", what)
		return nil
	}
	fmt.Fprintln(w)
	if _, err := conn.Exec(ctx, `SELECT set_config($1, 'on', false)`, sourcedb.InternalSetting); err != nil {
		return err
	}
	if restoreIdentity && !o.keepDDL() {
		for _, id := range o.identities {
			if id.previous != "d" && id.previous != "n" {
				fmt.Fprintf(w, "  table %s.%s kept REPLICA IDENTITY FULL: %s\n", id.schema, id.table, identityName(id.previous))
				continue
			}
			// A partitioned table's partitions were set with it.
			rows, err := conn.Query(ctx, `SELECT format('%I.%I', n.nspname, c.relname) FROM pg_partition_tree(format('%I.%I', $1::text, $2::text)::regclass) t
				JOIN pg_class c ON c.oid = t.relid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relreplident = 'f'`, id.schema, id.table)
			if err != nil {
				return fmt.Errorf("partitions of %s.%s: %w", id.schema, id.table, err)
			}
			tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
			if err != nil {
				return fmt.Errorf("partitions of %s.%s: %w", id.schema, id.table, err)
			}
			if len(tables) == 0 { // not partitioned: no tree
				tables = []string{pgx.Identifier{id.schema, id.table}.Sanitize()}
			}
			for _, t := range tables {
				if err := exec("table "+t+": REPLICA IDENTITY "+identityName(id.previous), "ALTER TABLE "+t+" REPLICA IDENTITY "+identityName(id.previous)); err != nil {
					return err
				}
			}
		}
	}
	if o.trigger && !o.keepDDL() {
		if err := exec("dropped event trigger "+sourcedb.DDLTrigger, "DROP EVENT TRIGGER IF EXISTS "+pgx.Identifier{sourcedb.DDLTrigger}.Sanitize()); err != nil {
			return err
		}
	}
	if o.publication {
		if err := exec("dropped publication "+o.pubName, "DROP PUBLICATION IF EXISTS "+pgx.Identifier{o.pubName}.Sanitize()); err != nil {
			return err
		}
	}
	for _, s := range o.slots {
		if err := sourcedb.DropSlot(ctx, conn, s.name); err != nil {
			return err
		}
		fmt.Fprintf(w, "  dropped replication slot %s\n", s.name)
	}
	if o.hasSchema && !o.keepDDL() {
		if err := exec("dropped schema "+sourcedb.DDLSchema+" and everything in it", "DROP SCHEMA IF EXISTS "+pgx.Identifier{sourcedb.DDLSchema}.Sanitize()+" CASCADE"); err != nil {
			return err
		}
	}
	return nil
}

// markUnregistered ends the source's open chain and records its state;
// base backups and segments stay.
func markUnregistered(env *Env, cfg *config.Config, src *config.Source) error {
	meta, err := engine.OpenMetadata(env.Ctx, cfg.Metadata)
	if err != nil {
		return err
	}
	defer meta.Close()
	rec, err := meta.GetSource(env.Ctx, src.Name)
	if errors.Is(err, store.ErrNotFound) {
		return nil // never ran: no metadata to mark
	}
	if err != nil {
		return err
	}
	chains, err := meta.ListChains(env.Ctx, rec.ID)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, ch := range chains {
		if ch.EndedAt.IsZero() {
			if err := meta.EndChain(env.Ctx, ch.ID, now, "unregistered: btfu unregister dropped the slot"); err != nil {
				return err
			}
		}
	}
	return meta.SetSourceState(env.Ctx, rec.ID, store.StateUnregistered, "btfu unregister removed btfu's objects from the source at "+now.UTC().Format(time.RFC3339)+"; its stored backups are kept")
}

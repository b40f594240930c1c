package restore

import (
	"context"
	"fmt"
	"strings"

	"github.com/btfu/btfu/segment"
)

// colMatch is how replay finds a REPLICA IDENTITY FULL row by one of its
// columns (DESIGN 4.5). The segment holds the source's text output of the
// old value; the target decides, per column type, whether its equality
// operator can be used and whether equality is the same as identity of
// the text form.
type colMatch uint8

const (
	// matchEqual: col = value. The type has an equality operator and
	// equal values have the same text form (integers, uuid, dates and
	// timestamps, enums, and domains, arrays and composites of these), so
	// '=' picks exactly the rows the old text names and can use an index.
	matchEqual colMatch = iota
	// matchEqualText: col = value AND their text forms are equal. The
	// type's equality is coarser than its text form: numeric 1.0 = 1.00,
	// float -0 = 0, interval '1 day' = '24 hours', jsonb {"a": 1.0} =
	// {"a": 1.00}, bpchar 'a' = 'a ', text under a nondeterministic
	// collation. '=' alone could pick another of two rows that differ only
	// there, and the target would end up holding the wrong one. '=' stays
	// for the index, the text comparison makes the match exact. Any type
	// not known to be exact is matched this way: when in doubt, the text
	// form is the safe choice.
	matchEqualText
	// matchText: their text forms are equal. The type has no equality
	// operator from a default btree or hash operator class (json, xml,
	// point, box, polygon, circle, line, lseg, path, txid_snapshot, and
	// arrays, domains and composites of any of them, or a user type
	// without one). box, lseg, line and circle have an '=' that compares
	// areas or lengths: never used.
	matchText
)

// exactTypes are the built-in types whose equality is identity of the
// text form (matchEqual); everything else with equality is
// matchEqualText. Enums are exact too.
var exactTypes = []uint32{
	16,   // boolean
	17,   // bytea
	18,   // "char"
	20,   // bigint
	21,   // smallint
	23,   // integer
	26,   // oid
	650,  // cidr
	790,  // money
	829,  // macaddr
	869,  // inet
	1082, // date
	1083, // time
	1114, // timestamp
	1184, // timestamptz
	2950, // uuid
	3220, // pg_lsn
}

// typeMatchSQL classifies types named as format_type() spells them, on the
// target: each type is walked down to its leaves (a domain to its base
// type, an array to its element, a composite to its attributes); the type
// has equality when every leaf has it (an enum, range or multirange; or a
// default btree or hash operator class of the leaf, or of a type it is
// implicitly binary-coercible to, whose equality operator is '='), and is
// exact when every leaf is an enum or one of $2. This follows PostgreSQL's
// own rule (lookup_type_cache: array_eq and record_eq need equality of the
// element or of every column). A name the target does not know (to_regtype
// NULL) comes back as equal: the statement then fails naming the type.
const typeMatchSQL = `WITH RECURSIVE walk(ord, oid) AS (
    SELECT r.ord, to_regtype(r.name)::oid FROM unnest($1::text[]) WITH ORDINALITY AS r(name, ord)
  UNION
    SELECT w.ord, c.child FROM walk w JOIN pg_type t ON t.oid = w.oid
    CROSS JOIN LATERAL (
        SELECT t.typbasetype WHERE t.typtype = 'd'
      UNION ALL
        SELECT e.oid FROM pg_type e WHERE e.typarray = t.oid
      UNION ALL
        SELECT a.atttypid FROM pg_attribute a
        WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
    ) c(child)
), leaf AS (
  SELECT w.ord, t.oid, t.typtype, t.typinput FROM walk w JOIN pg_type t ON t.oid = w.oid
  WHERE t.typtype NOT IN ('d', 'c') AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
)
SELECT r.ord::int,
  -- A domain's base type (through domains of domains): old values are
  -- read as that, so a check the domain got later (NOT VALID), which the
  -- old row may break, does not refuse the value the row holds.
  (WITH RECURSIVE d(oid, typtype, typbasetype) AS (
      SELECT t.oid, t.typtype, t.typbasetype FROM pg_type t WHERE t.oid = to_regtype(r.name) AND t.typtype = 'd'
    UNION ALL
      SELECT t.oid, t.typtype, t.typbasetype FROM d JOIN pg_type t ON t.oid = d.typbasetype WHERE d.typtype = 'd')
   SELECT format_type(d.oid, NULL) FROM d WHERE d.typtype <> 'd' LIMIT 1),
  coalesce(bool_and(l.typtype IN ('e', 'r', 'm') OR EXISTS (
    SELECT 1 FROM pg_opclass oc JOIN pg_am am ON am.oid = oc.opcmethod
      JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amoplefttype = oc.opcintype AND ao.amoprighttype = oc.opcintype
        AND ao.amopstrategy = CASE am.amname WHEN 'btree' THEN 3 ELSE 1 END
      JOIN pg_operator o ON o.oid = ao.amopopr AND o.oprname = '='
    WHERE oc.opcdefault AND am.amname IN ('btree', 'hash')
      AND (oc.opcintype = l.oid OR EXISTS (SELECT 1 FROM pg_cast k
        WHERE k.castsource = l.oid AND k.casttarget = oc.opcintype AND k.castmethod = 'b' AND k.castcontext = 'i')))), true),
  coalesce(bool_and(l.typtype = 'e' OR l.oid = ANY ($2::oid[])), true),
  -- Types PostgreSQL writes but never reads back (their input function
  -- always fails): the server's own node trees and statistics.
  coalesce(bool_or(l.typinput::regproc::text IN ('pg_node_tree_in', 'pg_ndistinct_in', 'pg_dependencies_in', 'pg_mcv_list_in',
    'pg_ddl_command_in', 'anyarray_in', 'pg_brin_bloom_summary_in', 'pg_brin_minmax_multi_summary_in')), false)
FROM unnest($1::text[]) WITH ORDINALITY AS r(name, ord) LEFT JOIN leaf l ON l.ord = r.ord
GROUP BY r.ord, r.name`

// matches returns how each column of rel is matched. The target catalog
// is asked once per column type (all of a relation's new types in one
// query) and the answer cached until the next DDL, which may change it
// (ALTER TYPE ... ADD ATTRIBUTE, a new operator class, a type dropped and
// made again).
func (p *replayer) matches(ctx context.Context, rel *segment.Relation) ([]typeInfo, error) {
	if p.typeMatch == nil {
		p.typeMatch = map[string]typeInfo{}
	}
	var ask []string
	seen := map[string]bool{}
	for _, c := range rel.Columns {
		if _, ok := p.typeMatch[c.Type]; !ok && !seen[c.Type] {
			seen[c.Type] = true
			ask = append(ask, c.Type)
		}
	}
	if len(ask) > 0 {
		rows, err := p.tx.Query(ctx, typeMatchSQL, ask, exactTypes)
		if err != nil {
			return nil, fmt.Errorf("ask the target how to match the columns of %s.%s: %w", rel.Schema, rel.Name, err)
		}
		for rows.Next() {
			var ord int
			var base *string
			var eq, exact, noInput bool
			if err := rows.Scan(&ord, &base, &eq, &exact, &noInput); err != nil {
				rows.Close()
				return nil, err
			}
			ti := typeInfo{match: matchText, cast: ask[ord-1], noInput: noInput}
			switch {
			case eq && exact:
				ti.match = matchEqual
			case eq:
				ti.match = matchEqualText
			}
			if base != nil {
				ti.cast = *base
			}
			p.typeMatch[ask[ord-1]] = ti
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("ask the target how to match the columns of %s.%s: %w", rel.Schema, rel.Name, err)
		}
	}
	out := make([]typeInfo, len(rel.Columns))
	for i, c := range rel.Columns {
		out[i] = p.typeMatch[c.Type]
	}
	return out, nil
}

// typeInfo is what replay knows of a column type on the target: how a
// REPLICA IDENTITY FULL row is matched by it, and the type old values are
// read as (a domain's base type, else the type itself).
type typeInfo struct {
	match   colMatch
	cast    string
	noInput bool // values of the type cannot be read back (pg_node_tree, …)
}

// fullCond is the condition matching column name (type typ) with the
// value in parameter n, by m. The text form is the type's output function
// (format's %s) on both sides, in the target's session: the old value
// goes through the type's input and output there, so session settings
// (TimeZone, DateStyle, extra_float_digits) apply alike, and casts to
// text that are not the output function (boolean's 'true', inet's mask,
// bpchar's trimmed spaces) play no part. COLLATE "C" compares bytes: a
// nondeterministic collation of the column would otherwise carry over.
func fullCond(name, typ string, n int, m colMatch) string {
	return fullCondOn(ident(name), fmt.Sprintf("$%d::text::%s", n, typ), m)
}

// fullCondOn is fullCond of the expressions col and val (a value of the
// column's type).
func fullCondOn(col, val string, m colMatch) string {
	text := fmt.Sprintf(`format('%%s', %s) COLLATE "C" = format('%%s', %s)`, col, val)
	switch m {
	case matchEqual:
		return col + " = " + val
	case matchEqualText:
		return col + " = " + val + " AND " + text
	}
	return text
}

// rowKey names a row in messages: its key columns, or every column when
// it has none (REPLICA IDENTITY FULL); NULL and unchanged TOAST values
// are named as such. Long keys are cut.
func rowKey(rel *segment.Relation, vals []segment.Value) string {
	keyed := false
	for _, c := range rel.Columns {
		keyed = keyed || c.Key
	}
	var parts []string
	for i, c := range rel.Columns {
		if (keyed && !c.Key) || i >= len(vals) {
			continue
		}
		switch v := vals[i]; v.Kind {
		case segment.Null:
			parts = append(parts, c.Name+"=NULL")
		case segment.Unchanged:
			parts = append(parts, c.Name+"=(unchanged TOAST)")
		default:
			parts = append(parts, c.Name+"="+v.Text)
		}
	}
	return cutKey(strings.Join(parts, ","))
}

func cutKey(k string) string {
	if len(k) > 200 {
		// Cut on a rune boundary.
		i := 200
		for i > 0 && k[i]&0xC0 == 0x80 {
			i--
		}
		k = k[:i] + "…"
	}
	return k
}

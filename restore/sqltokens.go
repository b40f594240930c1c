package restore

import "strings"

// token is one lexical element of a statement: a word (keyword or bare
// identifier, Upper holding it upper-cased), a quoted identifier, a
// string or dollar-quoted constant, or one other character. Comments and
// blanks are not tokens. Depth counts the parentheses around it.
type token struct {
	Kind       tokenKind
	Text       string // as written
	Upper      string // words: upper-cased
	Start, End int    // byte offsets in the statement
	Depth      int
}

type tokenKind uint8

const (
	tokWord tokenKind = iota
	tokQuoted
	tokString
	tokOther
)

// tokens lexes a statement the way PostgreSQL's scanner splits it, as far
// as replay needs: quotes ('…' with ” inside, E'…' with backslashes, "…"),
// dollar quotes, -- and /* */ comments (nested), and parentheses.
func tokens(s string) []token {
	var out []token
	depth := 0
	isWordStart := func(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80 }
	isWord := func(c byte) bool { return isWordStart(c) || c >= '0' && c <= '9' || c == '$' }
	for i := 0; i < len(s); {
		c := s[i]
		start := i
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f':
			i++
		case c == '-' && strings.HasPrefix(s[i:], "--"):
			if j := strings.IndexByte(s[i:], '\n'); j >= 0 {
				i += j + 1
			} else {
				i = len(s)
			}
		case c == '/' && strings.HasPrefix(s[i:], "/*"):
			nest := 0
			for i < len(s) {
				if strings.HasPrefix(s[i:], "/*") {
					nest++
					i += 2
				} else if strings.HasPrefix(s[i:], "*/") {
					nest--
					i += 2
					if nest == 0 {
						break
					}
				} else {
					i++
				}
			}
		case c == '\'' || ((c == 'E' || c == 'e') && i+1 < len(s) && s[i+1] == '\''):
			escapes := c != '\''
			if escapes {
				i++
			}
			i++
			for i < len(s) {
				if escapes && s[i] == '\\' {
					i += 2
					continue
				}
				if s[i] == '\'' {
					if i+1 < len(s) && s[i+1] == '\'' {
						i += 2
						continue
					}
					break
				}
				i++
			}
			i = min(i+1, len(s))
			out = append(out, token{Kind: tokString, Text: s[start:i], Start: start, End: i, Depth: depth})
		case c == '"':
			i++
			for i < len(s) {
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						i += 2
						continue
					}
					break
				}
				i++
			}
			i = min(i+1, len(s))
			out = append(out, token{Kind: tokQuoted, Text: s[start:i], Start: start, End: i, Depth: depth})
		case c == '$' && dollarTag(s[i:]) != "":
			tag := dollarTag(s[i:])
			if k := strings.Index(s[i+len(tag):], tag); k >= 0 {
				i += len(tag) + k + len(tag)
			} else {
				i = len(s)
			}
			out = append(out, token{Kind: tokString, Text: s[start:i], Start: start, End: i, Depth: depth})
		case isWordStart(c):
			for i < len(s) && isWord(s[i]) {
				i++
			}
			out = append(out, token{Kind: tokWord, Text: s[start:i], Upper: strings.ToUpper(s[start:i]), Start: start, End: i, Depth: depth})
		case c == '(':
			out = append(out, token{Kind: tokOther, Text: "(", Start: i, End: i + 1, Depth: depth})
			depth++
			i++
		case c == ')':
			depth--
			out = append(out, token{Kind: tokOther, Text: ")", Start: i, End: i + 1, Depth: depth})
			i++
		default:
			out = append(out, token{Kind: tokOther, Text: s[i : i+1], Start: i, End: i + 1, Depth: depth})
			i++
		}
	}
	return out
}

// dollarTag returns the dollar-quote tag ($$ or $name$) s starts with, or
// "".
func dollarTag(s string) string {
	j := strings.IndexByte(s[1:], '$')
	if j < 0 || !isTag(s[1:1+j]) || (j > 0 && s[1] >= '0' && s[1] <= '9') {
		return ""
	}
	return s[:j+2]
}

// topLevelWords returns the unquoted words of a statement outside
// parentheses, quotes, dollar quotes and comments, upper-cased.
func topLevelWords(s string) []string {
	var out []string
	for _, t := range tokens(s) {
		if t.Kind == tokWord && t.Depth == 0 {
			out = append(out, t.Upper)
		}
	}
	return out
}

// isOwnerChange tells a statement that only gives an object another owner
// (ALTER … OWNER TO role): replay leaves it out, as the base backup's
// pg_restore --no-owner does, so restored objects belong to the restoring
// role alike.
func isOwnerChange(s string) bool {
	ts := tokens(s)
	if len(ts) < 4 || ts[0].Upper != "ALTER" {
		return false
	}
	for i, t := range ts {
		if t.Depth == 0 && t.Kind == tokOther && t.Text == "," {
			return false // several subcommands
		}
		if t.Depth == 0 && t.Upper == "OWNER" && i+2 < len(ts) && ts[i+1].Upper == "TO" {
			rest := ts[i+3:]
			return len(rest) == 0 || (len(rest) == 1 && rest[0].Text == ";")
		}
	}
	return false
}

// withoutSchemaAuthorization takes AUTHORIZATION role out of CREATE
// SCHEMA, so the schema belongs to the restoring role as the base
// backup's objects do (a role of the source's cluster may not exist on
// the target). Without a schema name the schema is named after the role:
// name is then the schema's name as capture saw it.
func withoutSchemaAuthorization(s, name string) string {
	ts := tokens(s)
	if len(ts) < 4 || ts[0].Upper != "CREATE" || ts[1].Upper != "SCHEMA" {
		return s
	}
	i := 2
	if i+2 < len(ts) && ts[i].Upper == "IF" && ts[i+1].Upper == "NOT" && ts[i+2].Upper == "EXISTS" {
		i += 3
	}
	named := i < len(ts) && ts[i].Upper != "AUTHORIZATION"
	if named {
		i++
	}
	if i+1 >= len(ts) || ts[i].Upper != "AUTHORIZATION" {
		return s
	}
	role := ts[i+1]
	if named {
		return s[:ts[i].Start] + s[role.End:]
	}
	if name == "" {
		return s
	}
	return s[:ts[i].Start] + name + s[role.End:]
}

// withoutTablespace takes the TABLESPACE clauses out of a statement, for a
// target that lacks the tablespace: objects go to its default, as
// pg_restore --no-tablespaces would put them. ok is false when nothing is
// left to run (ALTER … SET TABLESPACE) or there was no clause.
func withoutTablespace(s string) (string, bool) {
	ts := tokens(s)
	var b strings.Builder
	last := 0
	cut := false
	for i := 0; i < len(ts); i++ {
		if ts[i].Upper != "TABLESPACE" || i+1 >= len(ts) {
			continue
		}
		from := ts[i].Start
		switch {
		case i >= 1 && ts[i-1].Upper == "SET":
			return s, false // moving an object: nothing else to do
		case i >= 2 && ts[i-2].Upper == "USING" && ts[i-1].Upper == "INDEX":
			from = ts[i-2].Start
		}
		b.WriteString(s[last:from])
		last = ts[i+1].End
		cut = true
		i++
	}
	if !cut {
		return s, false
	}
	b.WriteString(s[last:])
	return b.String(), true
}

// withRoleNamed writes role in place of CURRENT_ROLE, CURRENT_USER,
// SESSION_USER and USER where a statement names a role with them
// (AUTHORIZATION …, OWNER TO …, USER MAPPING FOR …, GRANTED BY …, and
// the TO/FROM lists of GRANT, REVOKE and policies), for a statement run as another
// role than the source's: the role it meant stays the same. Elsewhere
// (a column's DEFAULT current_user, a function body) they are left as
// written.
func withRoleNamed(s, role string) string {
	ts := tokens(s)
	grant := len(ts) > 0 && (ts[0].Upper == "GRANT" || ts[0].Upper == "REVOKE") ||
		len(ts) > 1 && (ts[0].Upper == "CREATE" || ts[0].Upper == "ALTER") && ts[1].Upper == "POLICY"
	inList := false
	var b strings.Builder
	last := 0
	for i, t := range ts {
		if t.Depth > 0 || t.Kind != tokWord {
			if t.Kind == tokOther && t.Text != "," {
				inList = false
			}
			continue
		}
		prev := func(k int) string {
			if i-k >= 0 {
				return ts[i-k].Upper
			}
			return ""
		}
		switch t.Upper {
		case "CURRENT_ROLE", "CURRENT_USER", "SESSION_USER", "USER":
			spec := inList || prev(1) == "AUTHORIZATION" || (prev(1) == "TO" && prev(2) == "OWNER") ||
				(prev(1) == "FOR" && (prev(2) == "MAPPING" || (prev(2) == "EXISTS" && prev(5) == "MAPPING"))) || (prev(1) == "BY" && prev(2) == "GRANTED")
			if t.Upper == "USER" && i+1 < len(ts) && ts[i+1].Upper == "MAPPING" {
				spec = false // GRANT … TO …; CREATE USER MAPPING
			}
			if spec {
				b.WriteString(s[last:t.Start])
				b.WriteString(ident(role))
				last = t.End
			}
		case "TO", "FROM":
			inList = grant
			continue
		case "GRANTED", "WITH", "CASCADE", "RESTRICT", "USING":
			inList = false
		}
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

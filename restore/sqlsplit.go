package restore

import "strings"

// splitStatements splits a client query string into statements at
// semicolons outside quotes, dollar quotes, comments, parentheses (a rule
// with several actions) and BEGIN ATOMIC … END bodies, as psql splits
// its input.
func splitStatements(q string) []string {
	var out []string
	start := 0
	atomic := 0 // nesting of BEGIN/CASE … END inside a BEGIN ATOMIC body
	var words []string
	ts := tokens(q)
	for i, t := range ts {
		switch {
		case t.Kind == tokWord && t.Depth == 0:
			words = append(words, t.Upper)
			switch {
			case atomic > 0 && (t.Upper == "BEGIN" || t.Upper == "CASE"):
				atomic++
			case atomic > 0 && t.Upper == "END":
				atomic--
			case atomic == 0 && t.Upper == "ATOMIC" && i > 0 && ts[i-1].Upper == "BEGIN" && routineDefinition(words):
				atomic = 1
			}
		case t.Kind == tokOther && t.Text == ";" && t.Depth == 0 && atomic == 0:
			if s := strings.TrimSpace(q[start:t.Start]); s != "" {
				out = append(out, s)
			}
			start, words = t.End, nil
		}
	}
	if s := strings.TrimSpace(q[start:]); s != "" {
		out = append(out, s)
	}
	return out
}

// routineDefinition tells a statement that defines a function or
// procedure (whose body may be BEGIN ATOMIC … END).
func routineDefinition(words []string) bool {
	if len(words) < 2 || words[0] != "CREATE" {
		return false
	}
	i := 1
	if i+1 < len(words) && words[i] == "OR" && words[i+1] == "REPLACE" {
		i += 2
	}
	return i < len(words) && (words[i] == "FUNCTION" || words[i] == "PROCEDURE")
}

func isTag(s string) bool {
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// ddlStatements keeps the statements of a captured query that fire event
// triggers (the commands DDL capture sees): the data changes of the same
// query arrive through the stream. REFRESH MATERIALIZED VIEW is among
// them: a materialized view's rows are not decoded, so the target
// computes them again from tables equal to the source's at that point.
func ddlStatements(q string) []string {
	var out []string
	for _, s := range splitStatements(q) {
		word := strings.ToUpper(strings.Fields(stripLeadingComments(s) + " x")[0])
		switch word {
		case "CREATE", "ALTER", "DROP", "COMMENT", "GRANT", "REVOKE", "SECURITY", "REFRESH", "IMPORT":
			out = append(out, s)
		}
	}
	return out
}

func stripLeadingComments(s string) string {
	for {
		s = strings.TrimSpace(s)
		switch {
		case strings.HasPrefix(s, "--"):
			if j := strings.IndexByte(s, '\n'); j >= 0 {
				s = s[j+1:]
				continue
			}
			return ""
		case strings.HasPrefix(s, "/*"):
			if j := strings.Index(s, "*/"); j >= 0 {
				s = s[j+2:]
				continue
			}
			return ""
		}
		return s
	}
}

package corpus

// Edit is one line of a diff: Op is '-' (only in a), '+' (only in b) or
// ' ' (in both).
type Edit struct {
	Op   byte
	Text string
}

// maxDiffCells bounds the LCS table; inputs whose differing middle is
// larger are compared as multisets instead (still exact counts, no order).
const maxDiffCells = 25_000_000

// Diff returns the edits turning a into b: a longest common subsequence
// of the part between their common prefix and suffix. Lines in both are
// left out unless keepCommon.
func Diff(a, b []string, keepCommon bool) []Edit {
	var edits []Edit
	common := func(s string) {
		if keepCommon {
			edits = append(edits, Edit{' ', s})
		}
	}
	p := 0
	for p < len(a) && p < len(b) && a[p] == b[p] {
		common(a[p])
		p++
	}
	sa, sb := len(a), len(b)
	for sa > p && sb > p && a[sa-1] == b[sb-1] {
		sa--
		sb--
	}
	ma, mb := a[p:sa], b[p:sb]
	if len(ma)*len(mb) > maxDiffCells {
		edits = append(edits, multisetDiff(ma, mb)...)
	} else {
		edits = append(edits, lcsDiff(ma, mb, keepCommon)...)
	}
	for i := sa; i < len(a); i++ {
		common(a[i])
	}
	return edits
}

func lcsDiff(a, b []string, keepCommon bool) []Edit {
	n, m := len(a), len(b)
	// l[i][j]: LCS length of a[i:] and b[j:].
	l := make([][]int32, n+1)
	for i := range l {
		l[i] = make([]int32, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			switch {
			case a[i] == b[j]:
				l[i][j] = l[i+1][j+1] + 1
			case l[i+1][j] >= l[i][j+1]:
				l[i][j] = l[i+1][j]
			default:
				l[i][j] = l[i][j+1]
			}
		}
	}
	var edits []Edit
	i, j := 0, 0
	for i < n && j < m {
		switch {
		case a[i] == b[j]:
			if keepCommon {
				edits = append(edits, Edit{' ', a[i]})
			}
			i++
			j++
		case l[i+1][j] >= l[i][j+1]:
			edits = append(edits, Edit{'-', a[i]})
			i++
		default:
			edits = append(edits, Edit{'+', b[j]})
			j++
		}
	}
	for ; i < n; i++ {
		edits = append(edits, Edit{'-', a[i]})
	}
	for ; j < m; j++ {
		edits = append(edits, Edit{'+', b[j]})
	}
	return edits
}

func multisetDiff(a, b []string) []Edit {
	count := map[string]int{}
	for _, s := range b {
		count[s]++
	}
	var edits []Edit
	for _, s := range a {
		if count[s] > 0 {
			count[s]--
			continue
		}
		edits = append(edits, Edit{'-', s})
	}
	for _, s := range b {
		if count[s] > 0 {
			count[s]--
			edits = append(edits, Edit{'+', s})
		}
	}
	return edits
}

// Changed counts the edits that are not common lines.
func Changed(edits []Edit) int {
	n := 0
	for _, e := range edits {
		if e.Op != ' ' {
			n++
		}
	}
	return n
}

package zonefile

import "strings"

// Finding the line of a field.
//
// The YAML-to-JSON step loses positions, so a decoding or validation error
// knows only its path (spec.ports[1].port). locate walks that path over the
// document's text, reading block-style YAML the way kubectl and people
// write it: "key:" lines and "- " item lines, nested by indentation. For
// anything else (flow style, multi-line keys) it stops at the deepest part
// of the path it found, so the answer is always a line of the document,
// at worst its first.

// mark is a key or a sequence item found on a line, with its column.
type mark struct {
	line int // 0-based, within the document
	col  int
	item bool   // "- "
	key  string // for !item
}

// scanMarks finds the marks of a document: on each line, any number of
// "- " item markers, then at most one "key:".
func scanMarks(text string) []mark {
	var marks []mark
	for n, line := range strings.Split(text, "\n") {
		line = strings.TrimRight(line, "\r")
		col := len(line) - len(strings.TrimLeft(line, " "))
		for col < len(line) {
			rest := line[col:]
			if rest[0] == '#' {
				break
			}
			if rest == "-" || strings.HasPrefix(rest, "- ") {
				marks = append(marks, mark{line: n, col: col, item: true})
				col++
				for col < len(line) && line[col] == ' ' {
					col++
				}
				continue
			}
			if k, ok := lineKey(rest); ok {
				marks = append(marks, mark{line: n, col: col, key: k})
			}
			break
		}
	}
	return marks
}

// lineKey returns the key when s starts with `key:` followed by a space or
// the end of the line; the key may be quoted.
func lineKey(s string) (string, bool) {
	var k, after string
	switch s[0] {
	case '"', '\'':
		end := strings.IndexByte(s[1:], s[0])
		if end < 0 {
			return "", false
		}
		k, after = s[1:1+end], s[2+end:]
	case '{', '[', '&', '*', '!', '|', '>', '?':
		return "", false
	default:
		i := strings.Index(s, ":")
		if i <= 0 {
			return "", false
		}
		k, after = strings.TrimRight(s[:i], " "), s[i:]
	}
	if !strings.HasPrefix(after, ":") {
		return "", false
	}
	after = after[1:]
	if after != "" && after[0] != ' ' && after[0] != '\t' {
		return "", false
	}
	return k, true
}

// locate returns the 0-based line of path within marks, or of its deepest
// prefix found; 0 when nothing is.
func locate(marks []mark, path []seg) int {
	line := 0
	lo, hi := 0, len(marks) // the current node's marks
	for _, s := range path {
		if lo >= hi {
			break
		}
		col := marks[lo].col
		found := -1
		if s.index < 0 {
			// Mapping: a key at the mapping's column.
			if marks[lo].item {
				break
			}
			for j := lo; j < hi; j++ {
				if m := marks[j]; m.col == col && !m.item && m.key == s.key {
					found = j
					break
				}
			}
			if found < 0 {
				break
			}
			// The value runs until a mark left of the key, or a sibling
			// key at its column (a sequence may sit at the key's column).
			end := found + 1
			for end < hi && (marks[end].col > col || (marks[end].col == col && marks[end].item)) {
				end++
			}
			lo, hi = found+1, end
		} else {
			// Sequence: the index-th item at the sequence's column.
			if !marks[lo].item {
				break
			}
			n := 0
			for j := lo; j < hi; j++ {
				if m := marks[j]; m.col == col && m.item {
					if n == s.index {
						found = j
						break
					}
					n++
				}
			}
			if found < 0 {
				break
			}
			end := found + 1
			for end < hi && marks[end].col > col {
				end++
			}
			lo, hi = found+1, end
		}
		line = marks[found].line
	}
	return line
}

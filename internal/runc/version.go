package runc

import (
	"fmt"
	"strconv"
	"strings"
)

// Version is runc's version. What each runc accepts is decided here and nowhere else:
//
//   - the global --criu PATH: honoured by runc 1.1; accepted but ignored by 1.2 and 1.3
//     (they run the criu on their PATH); rejected by 1.4 and later ("flag provided but not
//     defined: -criu"), on every command, state included.
type Version struct {
	Major, Minor, Patch int
	Text                string // the first line of `runc --version`
}

// ParseVersion reads `runc --version` ("runc version 1.1.5+ds1\ncommit: ...").
func ParseVersion(out string) (Version, error) {
	_, rest, ok := strings.Cut(out, "runc version ")
	rest = strings.TrimPrefix(rest, "v")
	var n [3]int
	var found int
	for found < 3 {
		d := 0
		for d < len(rest) && '0' <= rest[d] && rest[d] <= '9' {
			d++
		}
		if d == 0 {
			break
		}
		n[found], _ = strconv.Atoi(rest[:d])
		found++
		if len(rest) == d || rest[d] != '.' {
			break
		}
		rest = rest[d+1:]
	}
	if !ok || found < 2 {
		return Version{}, fmt.Errorf("runc --version: no version in %q", firstLine(out))
	}
	return Version{Major: n[0], Minor: n[1], Patch: n[2], Text: firstLine(out)}, nil
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' {
			return s[:i]
		}
	}
	return s
}

// AtLeast reports whether v is major.minor or later.
func (v Version) AtLeast(major, minor int) bool {
	return v.Major > major || v.Major == major && v.Minor >= minor
}

// HonoursCriuFlag reports whether this runc runs the CRIU named by --criu (1.1 and older).
func (v Version) HonoursCriuFlag() bool { return !v.AtLeast(1, 2) }

// AcceptsCriuFlag reports whether this runc accepts --criu at all (before 1.4).
func (v Version) AcceptsCriuFlag() bool { return !v.AtLeast(1, 4) }

package runc

import (
	"fmt"
	"regexp"
	"strconv"
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

var versionRE = regexp.MustCompile(`runc version v?([0-9]+)\.([0-9]+)(?:\.([0-9]+))?`)

// ParseVersion reads `runc --version` ("runc version 1.1.5+ds1\ncommit: ...").
func ParseVersion(out string) (Version, error) {
	m := versionRE.FindStringSubmatch(out)
	if m == nil {
		return Version{}, fmt.Errorf("runc --version: no version in %q", firstLine(out))
	}
	v := Version{Text: firstLine(out)}
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	if m[3] != "" {
		v.Patch, _ = strconv.Atoi(m[3])
	}
	return v, nil
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

package store

import (
	"fmt"
	"io/fs"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/tardis-runtime/tardis/internal/optin"
)

// The layout of the checkpoint root, in one table. Every name tardis writes under a key's
// directory is made here, and every name read back is classified by Classify: writers,
// readers, tardisctl and gc all go through these, so that no two places can disagree on
// what a name means (gc once removed claimed checkpoints for want of that).
//
//	<root>/<tenant>/<key>/current                    symlink to ckpt-<stamp>: the key's checkpoint
//	<root>/<tenant>/<key>/ckpt-<stamp>/              a published checkpoint (manifest.json, images/, rootfs.tar)
//	<root>/<tenant>/<key>/.claimed-<owner>-<stamp>   the current link renamed by a restore that holds the checkpoint
//	<root>/<tenant>/<key>/.tmp-<stamp>/              a checkpoint being written, never read
//	<root>/<tenant>/<key>/.current-<stamp>           a current link being swapped in
//	<root>/<tenant>/<key>/aside-<stamp>/             set aside after a failed restore, with REASON
//	<root>/<tenant>/<key>/consumed-<stamp>/          restored from, being removed
//
// <stamp> is the UTC time and 8 random hex digits ("20261207T172738.123456789Z-0a1b2c3d");
// <owner> names the node holding a claim (a safe name). Anything else under a key's
// directory is not tardis's: it is ignored, never followed, never removed.
const (
	CurrentLink  = "current"
	ManifestName = "manifest.json"
	ImagesDir    = "images"
	RootfsTar    = "rootfs.tar"
	ReasonFile   = "REASON"

	prefixCheckpoint = "ckpt-"
	prefixClaim      = ".claimed-"
	prefixTemp       = ".tmp-"
	prefixTempLink   = ".current-"
	prefixAside      = "aside-"
	prefixConsumed   = "consumed-"
)

// NameKind is what a name under a key's directory is, by its name and file type alone.
type NameKind int

const (
	NameUnknown    NameKind = iota // not tardis's
	NameCurrent                    // the current link
	NameCheckpoint                 // ckpt-<stamp>/
	NameClaim                      // .claimed-<owner>-<stamp> link
	NameTemp                       // .tmp-<stamp>/
	NameTempLink                   // .current-<stamp> link
	NameAside                      // aside-<stamp>/
	NameConsumed                   // consumed-<stamp>/
)

// Name is a classified name.
type Name struct {
	Kind  NameKind
	Stamp time.Time // when it was made (zero for current)
	Owner string    // NameClaim: the node holding the claim
}

const stampLayout = "20060102T150405.000000000Z"

// stampLen is the length of a stamp: the time and "-" and 8 hex digits.
const stampLen = len(stampLayout) + 9

func newStamp() string {
	// The suffix only keeps two names of one nanosecond apart (what a name may claim is
	// checked by owner and mode, not by guessing): the runtime's seeded generator does,
	// without crypto/rand's start-up cost on every runc call.
	return fmt.Sprintf("%s-%08x", time.Now().UTC().Format(stampLayout), rand.Uint32())
}

func parseStamp(s string) (time.Time, bool) {
	// "20060102T150405.000000000Z-" then 8 lower-case hex digits; time.Parse checks the
	// digits of the time.
	if len(s) != stampLen || s[len(stampLayout)] != '-' {
		return time.Time{}, false
	}
	for _, c := range s[len(stampLayout)+1:] {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return time.Time{}, false
		}
	}
	t, err := time.Parse(stampLayout, s[:len(stampLayout)])
	return t, err == nil
}

// Classify says what a directory entry of a key's directory is. typ is its file type
// (fs.DirEntry.Type()): a name of a directory kind that is not a directory, or of a link
// kind that is not a symlink, is NameUnknown.
func Classify(name string, typ fs.FileMode) Name {
	isDir, isLink := typ.IsDir(), typ&fs.ModeSymlink != 0
	if name == CurrentLink {
		if isLink {
			return Name{Kind: NameCurrent}
		}
		return Name{}
	}
	for _, p := range []struct {
		prefix string
		kind   NameKind
		dir    bool
	}{
		{prefixCheckpoint, NameCheckpoint, true},
		{prefixTemp, NameTemp, true},
		{prefixTempLink, NameTempLink, false},
		{prefixAside, NameAside, true},
		{prefixConsumed, NameConsumed, true},
	} {
		rest, ok := strings.CutPrefix(name, p.prefix)
		if !ok {
			continue
		}
		t, ok := parseStamp(rest)
		if !ok || (p.dir && !isDir) || (!p.dir && !isLink) {
			return Name{}
		}
		return Name{Kind: p.kind, Stamp: t}
	}
	if rest, ok := strings.CutPrefix(name, prefixClaim); ok && isLink && len(rest) > stampLen+1 {
		owner, st := rest[:len(rest)-stampLen-1], rest[len(rest)-stampLen:]
		t, ok := parseStamp(st)
		if ok && rest[len(rest)-stampLen-1] == '-' && checkName(owner) == nil {
			return Name{Kind: NameClaim, Stamp: t, Owner: owner}
		}
	}
	return Name{}
}

// stampOf is the stamp part of a name this package made (ckpt-, .tmp-, ...).
func stampOf(name string) string {
	if len(name) < stampLen {
		return ""
	}
	return name[len(name)-stampLen:]
}

func checkpointName(stamp string) string { return prefixCheckpoint + stamp }
func tempName(stamp string) string       { return prefixTemp + stamp }
func tempLinkName(stamp string) string   { return prefixTempLink + stamp }
func asideName(stamp string) string      { return prefixAside + stamp }
func consumedName(stamp string) string   { return prefixConsumed + stamp }
func claimName(owner string) string      { return prefixClaim + owner + "-" + newStamp() }

// isCheckpointName reports a well-formed ckpt-<stamp> name (what current and claims name).
func isCheckpointName(name string) bool {
	rest, ok := strings.CutPrefix(name, prefixCheckpoint)
	if !ok {
		return false
	}
	_, ok = parseStamp(rest)
	return ok
}

// StampTime is the time in a name this package made; zero for any other name.
func StampTime(name string) time.Time {
	for _, typ := range []fs.FileMode{fs.ModeDir, fs.ModeSymlink} {
		if n := Classify(name, typ); n.Kind != NameUnknown {
			return n.Stamp
		}
	}
	return time.Time{}
}

func checkName(name string) error { return optin.CheckName(name) }

package rootfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrNotOverlay is returned by UpperDir when the rootfs mount point is not an
// overlay mount with an upper directory.
var ErrNotOverlay = errors.New("rootfs is not an overlay mount")

// UpperDir finds, in a /proc/self/mountinfo-format reader, the overlay mount
// whose mount point is rootfs (absolute and symlink-resolved by the caller) and
// returns its upperdir. When several mounts are stacked on rootfs the last one
// listed is the visible one, so it wins.
func UpperDir(mountinfo io.Reader, rootfs string) (upper string, err error) {
	upper, _, err = OverlayDirs(mountinfo, rootfs)
	return upper, err
}

// OverlayDirs is UpperDir that also returns the overlay workdir ("" if the
// mount options do not list one).
func OverlayDirs(mountinfo io.Reader, rootfs string) (upper, work string, err error) {
	rootfs = filepath.Clean(rootfs)
	var fstype, opts string
	found := false
	sc := bufio.NewScanner(mountinfo)
	sc.Buffer(make([]byte, 64*1024), 1<<20) // overlay lowerdir lists can be long
	for sc.Scan() {
		// id parent major:minor root mountpoint mountopts [optional...] - fstype source superopts
		f := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 5 || sep < 0 || len(f) < sep+4 {
			continue // not a mountinfo line we understand; ignore it rather than guess
		}
		if unescape(f[4]) != rootfs {
			continue
		}
		found, fstype, opts = true, f[sep+1], f[sep+3]
	}
	if err := sc.Err(); err != nil {
		return "", "", fmt.Errorf("reading mountinfo: %w", err)
	}
	if !found {
		return "", "", fmt.Errorf("%w: no mount at %s", ErrNotOverlay, rootfs)
	}
	if fstype != "overlay" {
		return "", "", fmt.Errorf("%w: %s is %s", ErrNotOverlay, rootfs, fstype)
	}
	// The kernel escapes ',' (and space, tab, newline, '\\', '=') inside
	// option values as octal, so splitting on ',' before unescaping is safe.
	for _, o := range strings.Split(opts, ",") {
		switch k, v, _ := strings.Cut(o, "="); k {
		case "upperdir":
			upper = unescape(v)
		case "workdir":
			work = unescape(v)
		}
	}
	if upper == "" {
		return "", "", fmt.Errorf("%w: overlay at %s has no upperdir", ErrNotOverlay, rootfs)
	}
	return upper, work, nil
}

// unescape undoes the kernel's mountinfo escaping: \ooo (three octal digits).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

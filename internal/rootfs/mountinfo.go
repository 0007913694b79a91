package rootfs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
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
	err = eachMount(mountinfo, func(point, typ, superOpts string) {
		if point == rootfs {
			found, fstype, opts = true, typ, superOpts
		}
	})
	if err != nil {
		return "", "", err
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

// eachMount calls f with every mount's point, fs type and super options, in order.
func eachMount(mountinfo io.Reader, f func(point, fstype, superOpts string)) error {
	sc := bufio.NewScanner(mountinfo)
	sc.Buffer(make([]byte, 64*1024), 1<<20) // overlay lowerdir lists can be long
	for sc.Scan() {
		// id parent major:minor root mountpoint mountopts [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i := 6; i < len(fields); i++ {
			if fields[i] == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || len(fields) < sep+4 {
			continue // not a mountinfo line we understand; ignore it rather than guess
		}
		f(unescape(fields[4]), fields[sep+1], fields[sep+3])
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading mountinfo: %w", err)
	}
	return nil
}

// MountsUnder lists this mount namespace's mount points below dir, deepest first: the
// order to unmount them.
func MountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var points []string
	err = eachMount(f, func(point, _, _ string) {
		if strings.HasPrefix(point, filepath.Clean(dir)+"/") {
			points = append(points, point)
		}
	})
	slices.Reverse(points)
	return points, err
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

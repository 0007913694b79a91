package rootfs

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (overlay mounts, chown, mknod, trusted.* xattrs)")
	}
}

// mountOverlay mounts an overlay of lower with fresh upper and work
// directories in dir, returning merged and upper; it is unmounted at cleanup.
func mountOverlay(t testing.TB, lower, dir string) (merged, upper string) {
	t.Helper()
	merged, upper, work := filepath.Join(dir, "merged"), filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	for _, d := range []string{merged, upper, work} {
		must(t, os.MkdirAll(d, 0o755))
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
	if err := unix.Mount("overlay", merged, "overlay", 0, opts); err != nil {
		t.Skipf("cannot mount overlay: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(merged, unix.MNT_DETACH) })
	return merged, upper
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func write(t testing.TB, p, content string, mode os.FileMode) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(content), mode))
	must(t, os.Chmod(p, mode)) // umask
}

// tree is a comparable snapshot of a directory tree.
type tree map[string]string

// snapshot describes every path under root (not following symlinks): type,
// mode, owner, content digest, symlink target, user.* and security.* xattrs,
// hard link group, and the mtime of non-directories (and of directories when
// dirTimes).
func snapshot(t testing.TB, root string, dirTimes bool) tree {
	t.Helper()
	snap := tree{}
	inodes := map[uint64][]string{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("type=%o mode=%o uid=%d gid=%d", st.Mode&unix.S_IFMT, st.Mode&0o7777, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" size=%d sha=%x", len(b), sha256.Sum256(b))
			if st.Nlink > 1 {
				inodes[st.Ino] = append(inodes[st.Ino], rel)
			}
		case unix.S_IFLNK:
			l, _ := os.Readlink(p)
			desc += " link=" + l
		case unix.S_IFCHR, unix.S_IFBLK:
			desc += fmt.Sprintf(" rdev=%d", st.Rdev)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR || dirTimes && rel != "." {
			desc += fmt.Sprintf(" mtime=%d.%09d", st.Mtim.Sec, st.Mtim.Nsec)
		}
		sz, _ := unix.Llistxattr(p, nil)
		if sz > 0 {
			buf := make([]byte, sz)
			sz, _ = unix.Llistxattr(p, buf)
			names := strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00")
			sort.Strings(names)
			for _, n := range names {
				if strings.HasPrefix(n, "user.") || strings.HasPrefix(n, "security.") {
					v := make([]byte, 4096)
					vn, _ := unix.Lgetxattr(p, n, v)
					desc += fmt.Sprintf(" %s=%q", n, v[:max(vn, 0)])
				}
			}
		}
		snap[rel] = desc
		return nil
	})
	must(t, err)
	for _, names := range inodes {
		sort.Strings(names)
		for _, n := range names {
			snap[n] += " links=" + strings.Join(names, ",")
		}
	}
	return snap
}

func diffTrees(want, got tree) string {
	var out []string
	for k, w := range want {
		if g, ok := got[k]; !ok {
			out = append(out, fmt.Sprintf("- %s: %s", k, w))
		} else if g != w {
			out = append(out, fmt.Sprintf("~ %s:\n    want %s\n    got  %s", k, w, g))
		}
	}
	for k, g := range got {
		if _, ok := want[k]; !ok {
			out = append(out, fmt.Sprintf("+ %s: %s", k, g))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n")
}

func sameTree(t testing.TB, what string, want, got tree) {
	t.Helper()
	if d := diffTrees(want, got); d != "" {
		t.Fatalf("%s: trees differ:\n%s", what, d)
	}
}

// copyTree copies src to dst preserving everything (cp -a).
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v: %s", err, out)
	}
}

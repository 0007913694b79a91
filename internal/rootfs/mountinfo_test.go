package rootfs

import (
	"errors"
	"strings"
	"testing"
)

func TestUpperDir(t *testing.T) {
	const (
		root   = "/run/containerd/io.containerd.runtime.v2.task/k8s.io/abc123/rootfs"
		ctrd   = `1234 567 0:123 / ` + root + ` rw,relatime - overlay overlay rw,lowerdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/41/fs:/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/40/fs,upperdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/42/fs,workdir=/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/42/work,uuid=on`
		tmpfs  = `1300 1234 0:130 / ` + root + ` rw,nosuid - tmpfs tmpfs rw,size=65536k`
		other  = `22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw`
		shared = `1234 567 0:123 / ` + root + ` rw,relatime shared:5 master:3 - overlay overlay rw,lowerdir=/l,upperdir=/u,workdir=/w`
	)
	tests := []struct {
		name, mountinfo, rootfs, upper string
		err                            error
	}{
		{"containerd", other + "\n" + ctrd + "\n", root, "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/42/fs", nil},
		{"optional fields", shared, root, "/u", nil},
		{"trailing slash in rootfs", ctrd, root + "/", "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/42/fs", nil},
		{"escapes", `99 1 0:50 / /run/my\040root rw - overlay overlay rw,lowerdir=/l,upperdir=/var/a\054b\040c/up,workdir=/var/w`,
			"/run/my root", "/var/a,b c/up", nil},
		{"backslash", `99 1 0:50 / /r rw - overlay overlay rw,upperdir=/x\134y,workdir=/w`, "/r", `/x\y`, nil},
		{"not overlay", tmpfs, root, "", ErrNotOverlay},
		{"no mount", other, root, "", ErrNotOverlay},
		{"tmpfs stacked on overlay wins", ctrd + "\n" + tmpfs, root, "", ErrNotOverlay},
		{"overlay stacked on tmpfs wins", tmpfs + "\n" + ctrd, root, "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/42/fs", nil},
		{"later overlay wins", ctrd + "\n" + shared, root, "/u", nil},
		{"read-only overlay without upper", `99 1 0:50 / /r ro - overlay overlay ro,lowerdir=/a:/b`, "/r", "", ErrNotOverlay},
		{"prefix is not a match", ctrd, "/run/containerd", "", ErrNotOverlay},
		{"garbage lines ignored", "garbage\n\n" + ctrd, root, "/var/lib/containerd/io.containerd.snapshotter.v1.overlayfs/snapshots/42/fs", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			upper, err := UpperDir(strings.NewReader(tc.mountinfo), tc.rootfs)
			if !errors.Is(err, tc.err) || (tc.err == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.err)
			}
			if upper != tc.upper {
				t.Fatalf("upper = %q, want %q", upper, tc.upper)
			}
		})
	}
	_, work, err := OverlayDirs(strings.NewReader(shared), root)
	if err != nil || work != "/w" {
		t.Fatalf("workdir = %q, %v", work, err)
	}
}

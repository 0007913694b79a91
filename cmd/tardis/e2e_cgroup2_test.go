package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The cgroup v2 tier of the end-to-end suite, for hosts whose /sys/fs/cgroup is cgroup v1
// (like the development and CI machines): with TARDIS_E2E_CGROUP2=1, TestE2E runs this
// test binary again inside a mount namespace of its own (`unshare --mount --propagation
// private`), where /sys/fs/cgroup is replaced by a cgroup2 mount, so that runc sees a
// unified hierarchy and runs in its cgroup v2 mode. The host's mounts are untouched.
//
// Only the controllers that no v1 hierarchy holds are free for cgroup2 (on these
// machines: hugetlb alone), so containers get no cpu, memory or pids limits there. That
// is enough for runc and CRIU (runc 1.5.3 checkpoints and restores in this mode), not for
// containerd's CRI, which writes cpu.weight: the containerd and k8s scripts are skipped
// in this tier. Where /sys/fs/cgroup is already cgroup2, it is used as it is.
// cgroup2NSEnv is set for the tier's process: the mount namespace it was started from
// (/proc/self/ns/mnt's link), which its own must differ from.
const cgroup2NSEnv = "TARDIS_E2E_CGROUP2_NS"

// e2eCgroup2 says whether this run is the cgroup v2 tier's. Outside its namespace it
// runs the tier (this binary again, same flags, only TestE2E) and reports its result:
// then the caller has nothing more to do (outer is true). Inside, it mounts cgroup2 on
// /sys/fs/cgroup and the suite goes on there.
func e2eCgroup2(t *testing.T) (tier, outer bool) {
	if os.Getenv("TARDIS_E2E_CGROUP2") != "1" {
		return false, false
	}
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatalf("cgroup v2 tier: %v", err)
	}
	from := os.Getenv(cgroup2NSEnv)
	if from == "" {
		if isCgroup2("/sys/fs/cgroup") {
			t.Log("cgroup v2 tier: /sys/fs/cgroup is cgroup2 already; the suite runs here as it is")
			return true, false
		}
		runCgroup2Tier(t, self)
		return true, true
	}
	// Never touch the host's own /sys/fs/cgroup: this must be a mount namespace of its own.
	if !strings.HasPrefix(from, "mnt:[") || self == from {
		t.Fatalf("%s=%s, and this process is in mount namespace %s: refusing to remount /sys/fs/cgroup",
			cgroup2NSEnv, from, self)
	}
	if !isCgroup2("/sys/fs/cgroup") {
		t.Fatal("cgroup v2 tier: /sys/fs/cgroup is not cgroup2 in the tier's mount namespace")
	}
	ctrl, _ := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	t.Logf("cgroup v2 tier: /sys/fs/cgroup is cgroup2 in mount namespace %s (started from %s); free controllers: %q",
		self, from, strings.TrimSpace(string(ctrl)))
	return true, false
}

func isCgroup2(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// runCgroup2Tier runs this test binary with this run's flags (the -run pattern limited to
// TestE2E) in a private mount namespace whose /sys/fs/cgroup a shell has replaced with a
// cgroup2 mount before the binary starts (a Go program keeps the cpu controller's files
// open to follow its CPU limit, so it could not unmount them itself), its output going
// to this one's.
func runCgroup2Tier(t *testing.T, mntNS string) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	run := "^TestE2E$"
	if f := flag.Lookup("test.run"); f != nil {
		if _, sub, ok := strings.Cut(f.Value.String(), "/"); ok {
			run += "/" + sub
		}
	}
	args := []string{"--mount", "--propagation", "private", "--", "sh", "-c",
		`umount -R /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup && exec "$@"`, "sh",
		exe, "-test.run=" + run}
	for i := 1; i < len(os.Args); i++ {
		a := os.Args[i]
		switch {
		case a == "-test.run" || a == "--test.run":
			i++ // and its value
		case strings.HasPrefix(a, "-test.run=") || strings.HasPrefix(a, "--test.run="):
		default:
			args = append(args, a)
		}
	}
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), cgroup2NSEnv+"="+mntNS)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	t.Logf("cgroup v2 tier: unshare %s", strings.Join(args, " "))
	if err := cmd.Run(); err != nil {
		t.Fatalf("the cgroup v2 tier failed: %v (its output is above)", err)
	}
	fmt.Fprintln(os.Stdout, "cgroup v2 tier: passed")
}

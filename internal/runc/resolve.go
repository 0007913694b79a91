package runc

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// GuardEnv is set in runc's environment by tardis. A tardis that finds it set was started
// by tardis itself: the configured runc leads back to tardis, and going on would loop.
const GuardEnv = "TARDIS_EXEC_GUARD"

// ErrSelf means the configured runc is tardis itself.
var ErrSelf = errors.New("the runc to run is tardis itself")

// DefaultPath is the PATH tardis, runc and CRIU get when the caller gives none (Podman
// runs the runtime with an empty environment; CRIU needs iptables-restore on PATH).
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Resolve finds the real runc: the configured path, or else the first "runc" on PATH that
// is not tardis. isSelf reports whether a path is this very program.
func Resolve(configured, path string, isSelf func(string) bool) (string, error) {
	if configured != "" {
		p, err := exec.LookPath(configured)
		if err != nil {
			return "", fmt.Errorf("runc %q: %w", configured, err)
		}
		if isSelf(p) {
			return "", fmt.Errorf("%w: runc = %q", ErrSelf, configured)
		}
		return p, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, "runc")
		if st, err := os.Stat(p); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
			continue
		}
		if !isSelf(p) {
			return p, nil
		}
	}
	return "", errors.New(`no runc found on PATH other than tardis itself (set "runc" in the config or TARDIS_RUNC)`)
}

// SameFile reports whether path is the running executable (production's isSelf).
func SameFile(path string) bool {
	self, err := os.Executable()
	if err != nil {
		return false
	}
	a, err1 := os.Stat(self)
	b, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && os.SameFile(a, b)
}

package optin

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// ResolveHost resolves the host side of a network-filesystem path on disk, symlinks
// included, without ever leaving the allowed root it was named under: the path below the
// root is opened with openat2(RESOLVE_BENEATH|RESOLVE_NO_MAGICLINKS), so a symlink
// planted in the shared filesystem that points out of the root (absolute, or through
// "..") makes it fail rather than escape. It returns the resolved directory, which is what
// gets mounted. It needs real file descriptors, so it works on the real filesystem only.
//
// What is left: between this check and runc's mount, someone who can write inside the
// allowed root could swap a directory for a symlink. Allow only roots whose directory
// structure containers cannot change above the paths they name (see SECURITY.md).
func ResolveHost(host string, roots []string) (string, error) {
	var lastErr error = fmt.Errorf("%w: %s is not under networkfs_roots %v", ErrNotAllowed, host, roots)
	for _, r := range roots {
		if !within(host, r) {
			continue
		}
		real, err := resolveBeneath(filepath.Clean(r), host)
		if err == nil {
			return real, nil
		}
		lastErr = err
	}
	return "", lastErr
}

func resolveBeneath(root, host string) (string, error) {
	rootReal, err := filepath.EvalSymlinks(root) // the administrator's own path: trusted
	if err != nil {
		return "", fmt.Errorf("networkfs root %s: %w", root, err)
	}
	rfd, err := unix.Open(rootReal, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("networkfs root %s: %w", root, err)
	}
	defer unix.Close(rfd)
	rel, err := filepath.Rel(root, host)
	if err != nil {
		return "", fmt.Errorf("networkfs %s: %w", host, err)
	}
	fd, err := unix.Openat2(rfd, rel, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return "", fmt.Errorf("%w: %s does not resolve to a directory inside %s: %w", ErrNotAllowed, host, root, err)
	}
	defer unix.Close(fd)
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", fmt.Errorf("networkfs %s: %w", host, err)
	}
	if !within(real, rootReal) {
		return "", fmt.Errorf("%w: %s resolves to %s, outside %s", ErrNotAllowed, host, real, root)
	}
	return real, nil
}

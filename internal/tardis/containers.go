package tardis

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/tardis-runtime/tardis/internal/rootfs"
	"github.com/tardis-runtime/tardis/internal/runc"
)

// removeContainer removes a container that tardis made and must take back (a
// half-restored one, or one an interrupted restore left), under runc root root. Mounts runc
// left under the container's state directory (a runc stopped mid-restore leaves its bind of
// the rootfs at <root>/<id>/criu-root) are taken away first, so that nothing is ever
// deleted through them; then `runc delete --force`; then, when runc no longer knows the
// container but its directory is still there (it would make the caller's create fail with
// "container with given ID already exists"), that directory, which by then holds no mount.
func (a *app) removeContainer(root, id string) error {
	dir := filepath.Join(root, id)
	var errs []error
	if err := unmountUnder(dir); err != nil {
		errs = append(errs, err)
	}
	r := a.inRoot(root)
	ctx, cancel := a.bounded(statusTimeout)
	defer cancel()
	_, err := r.State(ctx, id)
	gone := errors.Is(err, runc.ErrNotExist) // runc does not know it: nothing for runc delete to do
	if !gone {
		if err := r.Delete(ctx, id, true); err != nil {
			errs = append(errs, fmt.Errorf("remove half-restored container: %w", err))
		}
		_, err := r.State(ctx, id)
		gone = errors.Is(err, runc.ErrNotExist)
	}
	if gone {
		if _, serr := os.Lstat(dir); serr == nil {
			if err := unmountUnder(dir); err != nil {
				errs = append(errs, err)
			} else if err := os.RemoveAll(dir); err != nil {
				errs = append(errs, fmt.Errorf("remove runc's leftover directory: %w", err))
			}
		}
	}
	return errors.Join(errs...)
}

// unmountUnder takes away every mount below dir (deepest first), and checks none is left.
func unmountUnder(dir string) error {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	points, err := rootfs.MountsUnder(dir)
	if err != nil {
		return fmt.Errorf("mounts under %s: %w", dir, err)
	}
	var errs []error
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	if left, err := rootfs.MountsUnder(dir); err == nil && len(left) > 0 {
		errs = append(errs, fmt.Errorf("mounts left under %s: %v", dir, left))
	}
	return errors.Join(errs...)
}

// inRoot is the runc of this invocation with another --root.
func (a *app) inRoot(root string) Runc {
	if root == "" || root == a.root() {
		return a.runc
	}
	return a.runc.InRoot(root)
}

package rootfs

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"syscall"
)

// ErrUnsaveable is wrapped when an upper directory holds something Save cannot archive.
var ErrUnsaveable = errors.New("cannot be saved")

// Plan is what Precheck found: how many entries Save will write and about how many bytes.
type Plan struct {
	Entries int
	Bytes   int64
}

// Precheck walks an upper directory without reading file contents or following symlinks
// and says what Save would refuse (a device node other than an overlay whiteout), and
// otherwise about how large the archive will be, so that a stop can give up before the
// dump rather than after.
func Precheck(upper string) (Plan, error) {
	var p Plan
	err := filepath.WalkDir(upper, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		p.Entries++
		p.Bytes += 1024 // a header and its PAX records
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch m := info.Mode(); {
		case m.IsRegular():
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				p.Bytes += min(info.Size(), st.Blocks*512)
			} else {
				p.Bytes += info.Size()
			}
		case m&(fs.ModeNamedPipe|fs.ModeSocket) != 0:
			rel, _ := filepath.Rel(upper, path)
			return fmt.Errorf("%w: %s is a fifo or socket", ErrUnsaveable, rel)
		case m&fs.ModeDevice != 0:
			if st, ok := info.Sys().(*syscall.Stat_t); ok && m&fs.ModeCharDevice != 0 && st.Rdev == 0 {
				return nil // an overlay whiteout
			}
			rel, _ := filepath.Rel(upper, path)
			return fmt.Errorf("%w: %s is a device node", ErrUnsaveable, rel)
		}
		return nil
	})
	if err != nil {
		return Plan{}, fmt.Errorf("precheck %s: %w", upper, err)
	}
	return p, nil
}

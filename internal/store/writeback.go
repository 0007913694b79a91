package store

import (
	"io/fs"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// WritebackEvery is how often StartWriteback asks the kernel to write what is new.
const WritebackEvery = 50 * time.Millisecond

// StartWriteback makes the disk write the pending checkpoint while it is still being
// written (CRIU's images, then the container's files), so that the dump and the disk
// overlap instead of following each other: left alone, the kernel starts writing dirty
// pages only past its background threshold or after 30 s, and Publish's fsync would then
// write the whole checkpoint after the dump. Every `every` it asks for writeback of each
// regular file under the pending directory (sync_file_range SYNC_FILE_RANGE_WRITE: a
// request, which neither waits for the disk nor makes anything durable; Publish's fsync
// still does that). The returned stop ends it and waits until it has; it may be called
// more than once.
func (p *Pending) StartWriteback(every time.Duration) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				writeback(p.Dir)
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			close(done)
			<-finished
		})
	}
}

// syncFileRange is unix.SyncFileRange (a variable for the tests).
var syncFileRange = unix.SyncFileRange

// writeback requests writeback of every regular file under dir. Errors are ignored: it is
// a hint, and a file that vanished or cannot be opened is simply not hinted. The directory
// is tardis's own (Begin made it 0700).
func writeback(dir string) {
	_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			hintWriteback(path)
		}
		return nil
	})
}

// hintWriteback asks the kernel to start writing the file's dirty pages, without waiting
// for the disk; nothing is followed through a link.
func hintWriteback(path string) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	_ = syncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	unix.Close(fd)
}

package store

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Every regular file under the pending checkpoint is hinted, again and again while it is
// written, and nothing is followed through a link; stop waits for the last round.
func TestWritebackHintsEveryFile(t *testing.T) {
	p, err := newStore(t).Begin(k)
	if err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "host-file")
	for name, body := range map[string]string{"images/pages-1.img": "p", "images/core-1.img": "c", "rootfs.tar": "r", outside: "h"} {
		if !filepath.IsAbs(name) {
			name = filepath.Join(p.Dir, name)
		}
		if err := os.WriteFile(name, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(p.Images(), "link.img")); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	hinted := map[string]int{}
	syncFileRange = func(fd int, off, n int64, flags int) error {
		target, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
		mu.Lock()
		hinted[target]++
		mu.Unlock()
		return nil
	}
	defer func() { syncFileRange = unix.SyncFileRange }()
	names := []string{"images/pages-1.img", "images/core-1.img", "rootfs.tar"}
	hintedTwice := func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, name := range names {
			if hinted[filepath.Join(p.Dir, name)] < 2 {
				return false
			}
		}
		return true
	}
	stop := p.StartWriteback(time.Millisecond)
	// Every tick hints every file; a loaded machine may delay the ticks, never skip a file.
	for deadline := time.Now().Add(5 * time.Second); !hintedTwice() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	mu.Lock()
	after := maps.Clone(hinted)
	mu.Unlock()
	for _, name := range names {
		if n := after[filepath.Join(p.Dir, name)]; n < 2 {
			t.Errorf("%s hinted %d times, want several", name, n)
		}
	}
	if n := after[outside]; n != 0 {
		t.Errorf("a file outside the checkpoint was hinted through a link (%d times)", n)
	}
	time.Sleep(20 * time.Millisecond)
	if !maps.Equal(after, hinted) {
		t.Error("hints after stop returned")
	}
}

// A checkpoint being written reaches the disk while it is written, not only at Publish's
// fsync: the kernel would otherwise hold its pages dirty for up to 30 s.
func TestWritebackWhileWriting(t *testing.T) {
	p, err := newStore(t).Begin(k)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p.Dir, &st); err != nil || st.Type == unix.TMPFS_MAGIC {
		t.Skip("the test directory has no disk behind it")
	}
	stop := p.StartWriteback(10 * time.Millisecond)
	f, err := os.Create(filepath.Join(p.Images(), "pages-1.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{0xa5}, 1<<20)
	for range 16 { // a dump in progress: 16 MiB in steps
		if _, err := f.Write(chunk); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var cs unix.Cachestat_t
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		err := unix.Cachestat(uint(f.Fd()), &unix.CachestatRange{}, &cs, 0)
		if errors.Is(err, unix.ENOSYS) {
			t.Skip("no cachestat on this kernel")
		}
		if err != nil {
			t.Fatal(err)
		}
		if cs.Dirty == 0 || time.Now().After(deadline) {
			break
		}
	}
	stop()
	stop() // idempotent
	if cs.Dirty != 0 {
		t.Errorf("%d of %d pages still dirty 5 s after they were written: no writeback while writing", cs.Dirty, cs.Cache)
	}
}

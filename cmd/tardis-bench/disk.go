package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The disk's own floor, measured in the same run as what it bounds: writing n bytes
// through the page cache and making them durable (what a checkpoint must do at the
// least), and reading them back with none of them cached (what a restore from storage
// must do at the least).

// diskChunk is one MiB of random bytes (a compressing or deduplicating layer below the
// filesystem would make zeros cheaper than any real image).
var diskChunk = sync.OnceValue(func() []byte {
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	return buf
})

// diskWrite writes n bytes to a new file at path in 1 MiB writes, then fsyncs the file
// and its directory.
func diskWrite(path string, n int64) (time.Duration, error) {
	buf := append([]byte{}, diskChunk()...)
	start := time.Now()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	for off := int64(0); off < n; off += int64(len(buf)) {
		buf[0], buf[1], buf[2] = byte(off>>20), byte(off>>28), byte(off>>36) // no two MiB alike
		chunk := buf
		if rest := n - off; rest < int64(len(chunk)) {
			chunk = chunk[:rest]
		}
		if _, err := f.Write(chunk); err != nil {
			f.Close()
			return 0, err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := syncPath(filepath.Dir(path)); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// diskWriteParallel is diskWrite of n bytes to each of k files at once (k writers, as k
// containers stopped together write k checkpoints).
func diskWriteParallel(dir string, k int, n int64) (time.Duration, error) {
	start := time.Now()
	errs := make([]error, k)
	var wg sync.WaitGroup
	for i := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = diskWrite(filepath.Join(dir, fmt.Sprintf("disk-%d", i)), n)
		}()
	}
	wg.Wait()
	return time.Since(start), errors.Join(errs...)
}

// diskRead reads the (synced) file at path back with its pages dropped from the cache
// first, in 1 MiB reads, as CRIU and tardis read images.
func diskRead(path string) (time.Duration, error) {
	if err := evict(path); err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	start := time.Now()
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	if _, err := io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// evict drops a file's pages from the page cache. Only clean pages go: the file must have
// been synced. Nothing else on the machine loses its cache (unlike drop_caches).
func evict(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED)
}

// evictTree evicts every regular file under dir.
func evictTree(dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Type().IsRegular() {
			return evict(p)
		}
		return nil
	})
}

// treeBytes is the total size of the regular files under dir.
func treeBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if info, err := d.Info(); err == nil {
				n += info.Size()
			}
		}
		return nil
	})
	return n
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// gbps is bytes per duration in GB/s (10^9 bytes).
func gbps(bytes int64, ms float64) float64 {
	if ms <= 0 {
		return 0
	}
	return float64(bytes) / (ms / 1000) / 1e9
}

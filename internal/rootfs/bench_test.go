package rootfs

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// benchTree writes 3000 files in 100 directories, 4-32 KiB each (~54 MiB),
// with a user xattr on every tenth file.
func benchTree(b *testing.B, dir string) int64 {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 32<<10)
	var total int64
	for d := range 100 {
		sub := filepath.Join(dir, fmt.Sprintf("d%03d", d))
		must(b, os.MkdirAll(sub, 0o755))
		for f := range 30 {
			n := 4 << 10 * (f%8 + 1)
			for i := range buf[:n] {
				buf[i] = byte(rng.Uint32())
			}
			p := filepath.Join(sub, fmt.Sprintf("f%02d", f))
			must(b, os.WriteFile(p, buf[:n], 0o644))
			if f%10 == 0 {
				must(b, unix.Lsetxattr(p, "user.bench", []byte("v"), 0))
			}
			total += int64(n)
		}
	}
	return total
}

// BenchmarkSaveApply compares Save and Apply with GNU tar creating and
// extracting the same tree (with xattrs, preserving owners and modes), both
// through an archive file in the same directory.
func BenchmarkSaveApply(b *testing.B) {
	requireRoot(b) // Apply chowns
	dir := b.TempDir()
	// On tmpfs, so that the numbers compare CPU and syscalls, not the disk.
	// TARDIS_BENCH_DISK=1 keeps the test's temporary directory instead.
	if os.Getenv("TARDIS_BENCH_DISK") == "" {
		if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=512m"); err != nil {
			b.Fatalf("mount tmpfs: %v", err)
		}
		b.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	}
	src := filepath.Join(dir, "src")
	size := benchTree(b, src)
	archive := filepath.Join(dir, "archive.tar")
	tarBin, tarErr := exec.LookPath("tar")
	run := func(b *testing.B, args ...string) {
		if out, err := exec.Command(tarBin, args...).CombinedOutput(); err != nil {
			b.Fatalf("tar %v: %v: %s", args, err, out)
		}
	}
	save := func(b *testing.B) {
		f, err := os.Create(archive)
		must(b, err)
		_, err = Save(src, f)
		must(b, err)
		must(b, f.Close())
	}
	// extractOver runs x into a fresh directory per iteration, prepared by
	// prep (nil: left empty).
	extractOver := func(b *testing.B, prep func(dst string), x func(dst string)) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			dst := filepath.Join(dir, "dst")
			must(b, os.RemoveAll(dst))
			if prep != nil {
				prep(dst)
			} else {
				must(b, os.Mkdir(dst, 0o755))
			}
			b.StartTimer()
			x(dst)
		}
	}
	// extract runs x into a fresh empty directory per iteration.
	extract := func(b *testing.B, x func(dst string)) { extractOver(b, nil, x) }
	applyTardis := func(b *testing.B, prep func(dst string)) {
		save(b)
		backup := b.TempDir()
		extractOver(b, prep, func(dst string) {
			f, err := os.Open(archive)
			must(b, err)
			defer f.Close()
			u, _, err := Apply(dst, bufio.NewReader(f), backup)
			must(b, err)
			must(b, u.Commit())
		})
	}
	b.Run("save/tardis", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			save(b)
		}
	})
	b.Run("apply/tardis", func(b *testing.B) { applyTardis(b, nil) })
	// Over the same (empty) directories: every file is journaled as new.
	b.Run("apply/tardis-over-dirs", func(b *testing.B) {
		applyTardis(b, func(dst string) {
			for d := range 100 {
				must(b, os.MkdirAll(filepath.Join(dst, fmt.Sprintf("d%03d", d)), 0o755))
			}
		})
	})
	// Over a copy of the tree: every file is backed up, then replaced.
	b.Run("apply/tardis-over-files", func(b *testing.B) {
		applyTardis(b, func(dst string) { copyTree(b, src, dst) })
	})
	if tarErr != nil {
		b.Logf("no tar to compare with: %v", tarErr)
		return
	}
	b.Run("save/tar", func(b *testing.B) {
		b.SetBytes(size)
		for i := 0; i < b.N; i++ {
			run(b, "--xattrs", "--xattrs-include=user.*", "-cf", archive, "-C", src, ".")
		}
	})
	b.Run("apply/tar", func(b *testing.B) {
		run(b, "--xattrs", "--xattrs-include=user.*", "-cf", archive, "-C", src, ".")
		extract(b, func(dst string) {
			run(b, "--xattrs", "--xattrs-include=user.*", "--same-owner", "-xpf", archive, "-C", dst)
		})
	})
}

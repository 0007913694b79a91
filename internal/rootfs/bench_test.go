package rootfs

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// benchTree writes files random bytes in dirs directories, of sizes from
// minSize up to maxSize bytes (a multiple of 1 KiB), with a user xattr on
// every tenth file. It returns the total size.
func benchTree(b *testing.B, dir string, dirs, files, minSize, maxSize int) int64 {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, maxSize)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	var total int64
	for f := range files {
		sub := filepath.Join(dir, fmt.Sprintf("d%03d", f%dirs))
		if f < dirs {
			must(b, os.MkdirAll(sub, 0o755))
		}
		n := minSize + rng.IntN((maxSize-minSize)/1024+1)*1024
		buf[0], buf[1] = byte(f), byte(f>>8) // not all alike
		p := filepath.Join(sub, fmt.Sprintf("f%05d", f))
		must(b, os.WriteFile(p, buf[:n], 0o644))
		if f%10 == 0 {
			must(b, unix.Lsetxattr(p, "user.bench", []byte("v"), 0))
		}
		total += int64(n)
	}
	return total
}

// The trees the benchmarks compare tardis and GNU tar on.
var benchTrees = []struct {
	name                          string
	dirs, files, minSize, maxSize int
	tmpfsMiB                      int
	overVariants                  bool // also apply over existing dirs and files
}{
	// 3000 files of 4-32 KiB in 100 directories (~54 MiB).
	{name: "mixed", dirs: 100, files: 3000, minSize: 4 << 10, maxSize: 32 << 10, tmpfsMiB: 512, overVariants: true},
	// 20,000 files of 1-8 KiB in 200 directories (~88 MiB).
	{name: "small", dirs: 200, files: 20000, minSize: 1 << 10, maxSize: 8 << 10, tmpfsMiB: 768},
	// 300 MiB in 60 files of 1-9 MiB.
	{name: "large", dirs: 6, files: 60, minSize: 1 << 20, maxSize: 9 << 20, tmpfsMiB: 1536},
}

// BenchmarkSaveApply compares Save and Apply with GNU tar creating and
// extracting the same trees (with xattrs, preserving owners and modes), both
// through an archive file in the same directory. Each iteration runs both,
// alternating which goes first, so that a load that comes and goes (a
// shared machine) weighs on both alike: the metrics tardis-ms and tar-ms
// are their mean times, and tardis/tar their ratio. Select a tree with
// -bench 'SaveApply/small/'.
func BenchmarkSaveApply(b *testing.B) {
	requireRoot(b) // Apply chowns
	for _, bt := range benchTrees {
		b.Run(bt.name, func(b *testing.B) {
			dir := b.TempDir()
			// On tmpfs, so that the numbers compare CPU and syscalls, not the
			// disk. TARDIS_BENCH_DISK=1 keeps the test's temporary directory.
			if os.Getenv("TARDIS_BENCH_DISK") == "" {
				if err := unix.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%dm", bt.tmpfsMiB)); err != nil {
					b.Fatalf("mount tmpfs: %v", err)
				}
				b.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
			}
			src := filepath.Join(dir, "src")
			size := benchTree(b, src, bt.dirs, bt.files, bt.minSize, bt.maxSize)
			benchVsTar(b, dir, src, size, bt.overVariants)
		})
	}
}

func benchVsTar(b *testing.B, dir, src string, size int64, overVariants bool) {
	archive, tarArchive := filepath.Join(dir, "archive.tar"), filepath.Join(dir, "gnu.tar")
	dst, backup := filepath.Join(dir, "dst"), filepath.Join(dir, "backup")
	must(b, os.MkdirAll(backup, 0o700))
	tarBin, tarErr := exec.LookPath("tar")
	tarArgs := []string{"--xattrs", "--xattrs-include=user.*"}
	runTar := func(b *testing.B, args ...string) {
		if out, err := exec.Command(tarBin, append(tarArgs, args...)...).CombinedOutput(); err != nil {
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
	apply := func(b *testing.B) {
		f, err := os.Open(archive)
		must(b, err)
		defer f.Close()
		u, _, err := Apply(dst, f, backup)
		must(b, err)
		must(b, u.Commit())
	}
	// fresh makes dst again, prepared by prep (nil: empty).
	fresh := func(b *testing.B, prep func()) {
		must(b, os.RemoveAll(dst))
		if prep != nil {
			prep()
		} else {
			must(b, os.Mkdir(dst, 0o755))
		}
	}
	// versus times tardis and tar (if there is one) in turn, each after
	// its untimed setup.
	versus := func(b *testing.B, setup func(b *testing.B), tardis, gnu func(b *testing.B)) {
		b.SetBytes(size)
		var td, tt time.Duration
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			for k := range 2 {
				if (i+k)%2 == 1 && tarErr == nil {
					b.StopTimer()
					setup(b)
					t0 := time.Now()
					gnu(b)
					tt += time.Since(t0)
					b.StartTimer()
				} else if (i+k)%2 == 0 {
					b.StopTimer()
					setup(b)
					b.StartTimer()
					t0 := time.Now()
					tardis(b)
					td += time.Since(t0)
				}
			}
		}
		b.StopTimer()
		ms := func(d time.Duration) float64 { return float64(d) / float64(b.N) / 1e6 }
		b.ReportMetric(ms(td), "tardis-ms")
		if tarErr == nil {
			b.ReportMetric(ms(tt), "tar-ms")
			b.ReportMetric(float64(td)/float64(tt), "tardis/tar")
		}
	}
	b.Run("save", func(b *testing.B) {
		versus(b, func(*testing.B) {}, save, func(b *testing.B) { runTar(b, "-cf", tarArchive, "-C", src, ".") })
	})
	save(b)
	if tarErr == nil {
		runTar(b, "-cf", tarArchive, "-C", src, ".")
	}
	b.Run("apply", func(b *testing.B) {
		versus(b, func(b *testing.B) { fresh(b, nil) }, apply,
			func(b *testing.B) { runTar(b, "--same-owner", "-xpf", tarArchive, "-C", dst) })
	})
	if overVariants {
		applyOver := func(b *testing.B, prep func()) {
			b.SetBytes(size)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				fresh(b, prep)
				b.StartTimer()
				apply(b)
			}
		}
		// Over the same (empty) directories: every file is journaled as new.
		b.Run("apply-over-dirs", func(b *testing.B) {
			applyOver(b, func() {
				ents, err := os.ReadDir(src)
				must(b, err)
				for _, e := range ents {
					must(b, os.MkdirAll(filepath.Join(dst, e.Name()), 0o755))
				}
			})
		})
		// Over a copy of the tree: every file is backed up, then replaced.
		b.Run("apply-over-files", func(b *testing.B) {
			applyOver(b, func() { copyTree(b, src, dst) })
		})
	}
	must(b, os.RemoveAll(dst))
}

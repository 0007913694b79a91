package store

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// BenchmarkDigests is the hashing of a signed checkpoint's files (at publish and again at
// every restore of a signed store), over files in the page cache: one 256 MiB file (a
// checkpoint's pages image, which one core hashes alone) and 8 files of 32 MiB (spread
// over every core). The goal is at least 1 GB/s (MB/s in the output).
func BenchmarkDigests(b *testing.B) {
	for _, c := range []struct {
		name  string
		files int
		size  int64
	}{{"1x256MiB", 1, 256 << 20}, {"8x32MiB", 8, 32 << 20}} {
		b.Run(c.name, func(b *testing.B) {
			dir := b.TempDir()
			buf := make([]byte, 1<<20)
			rng := rand.New(rand.NewPCG(5, 6))
			for i := range buf {
				buf[i] = byte(rng.Uint32())
			}
			var files []File
			for i := range c.files {
				name := fmt.Sprintf("pages-%d.img", i)
				f, err := os.Create(filepath.Join(dir, name))
				if err != nil {
					b.Fatal(err)
				}
				for off := int64(0); off < c.size; off += int64(len(buf)) {
					buf[0] = byte(off >> 20)
					if _, err := f.Write(buf); err != nil {
						b.Fatal(err)
					}
				}
				if err := f.Close(); err != nil {
					b.Fatal(err)
				}
				files = append(files, File{Path: name, Size: c.size})
			}
			if _, err := digests(dir, files); err != nil { // the page cache holds them all
				b.Fatal(err)
			}
			b.SetBytes(int64(c.files) * c.size)
			cpu0 := cpuTime()
			b.ResetTimer()
			for range b.N {
				if _, err := digests(dir, files); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// The rate per CPU-second: what a core does when it is not shared (the wall
			// rate above halves when another program has the other core).
			if cpu := cpuTime() - cpu0; cpu > 0 {
				b.ReportMetric(float64(int64(c.files)*c.size*int64(b.N))/cpu.Seconds()/1e6, "MB/cpu-s")
			}
		})
	}
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

package main

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/tardis-runtime/tardis/internal/optin"
	"github.com/tardis-runtime/tardis/internal/store"
)

// drain stops k containers at once, as a node drain does (every pod deleted together):
// k opted-in containers touching mib MiB each stopped by k concurrent `tardis kill ID 15`,
// against k concurrent bare `runc checkpoint`s (each followed by the fsync of its images)
// and the disk writing k checkpoints' bytes at once with fsync. Per k: the total (from the
// first stop's start to the last one's end) and the slowest single stop.
func (b *bench) drain(res *results, o options) error {
	maxK := 0
	for _, k := range o.drainKs {
		maxK = max(maxK, k)
	}
	bundles := make([]string, maxK)
	for i := range bundles {
		bundles[i] = b.path("bundles", fmt.Sprintf("drain-%d", i))
		if err := b.makeBundle(bundles[i], optedIn(drainKey(i)), false, "/bin/memhog", "-mib", fmt.Sprint(o.drainMiB)); err != nil {
			return err
		}
	}
	defer func() {
		for _, d := range bundles {
			os.RemoveAll(d)
		}
	}()
	var perContainer int64 // one checkpoint's bytes
	for _, k := range o.drainKs {
		g := res.group(fmt.Sprintf("drain %d x %d MiB", k, o.drainMiB),
			fmt.Sprintf("%d containers touching %d MiB each stopped at once: `tardis kill ID 15` each, vs `runc checkpoint` each (and its images fsynced), vs the disk writing their bytes (k files at once, fsync)", k, o.drainMiB),
			"runc + fsync total")
		g.compareSlowest("tardis total", []string{"runc total", "disk write+fsync total"}, 0)
		g.compare("tardis total", "runc + fsync total", 0)
		g.compare("tardis slowest stop", "runc + fsync slowest", 0)
		err := b.alternate(o.drainN, []string{"tardis", "runc", "disk"}, func(i int, v string) error {
			switch v {
			case "disk":
				n := perContainer
				if n == 0 {
					n = int64(o.drainMiB+6) << 20
				}
				dir := b.path("disk-drain")
				if err := os.MkdirAll(dir, 0o700); err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				syscall.Sync()
				d, err := diskWriteParallel(dir, k, n)
				if err != nil {
					return err
				}
				if perContainer > 0 {
					d = time.Duration(float64(d) * float64(perContainer) / float64(n))
				}
				g.add("disk write+fsync total", d)
				return nil
			case "tardis":
				return b.drainTardis(g, bundles[:k], i, &perContainer)
			default:
				return b.drainRunc(g, bundles[:k], i)
			}
		})
		if err != nil {
			return err
		}
		res.Drain = append(res.Drain, &drainPoint{K: k, MiB: o.drainMiB, group: g})
	}
	return nil
}

func drainKey(i int) string { return fmt.Sprintf("bench-drain-%d", i) }

// startAll starts one container per bundle with tool and waits until each is ready.
func (b *bench) startAll(tool string, bundles []string, ids []string) ([]*watch, error) {
	var wts []*watch
	for j, bundle := range bundles {
		wt, err := b.startContainer(tool, ids[j], bundle)
		if err != nil {
			return wts, err
		}
		wts = append(wts, wt)
		if err := await(wt.ready, "ready", 5*time.Minute); err != nil {
			return wts, err
		}
	}
	return wts, nil
}

// concurrently runs f(j) for j < k at once, and returns the total time and each one's.
func concurrently(k int, f func(j int) (time.Duration, error)) (time.Duration, []time.Duration, error) {
	ds, errs := make([]time.Duration, k), make([]error, k)
	var wg sync.WaitGroup
	start := time.Now()
	for j := range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ds[j], errs[j] = f(j)
		}()
	}
	wg.Wait()
	return time.Since(start), ds, errors.Join(errs...)
}

func slowest(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}

func (b *bench) drainTardis(g *group, bundles []string, i int, perContainer *int64) error {
	k := len(bundles)
	ids := make([]string, k)
	for j := range ids {
		ids[j] = fmt.Sprintf("drain%d-tardis-%d-%d", k, i, j)
	}
	defer func() {
		for j, id := range ids {
			b.remove(id)
			// The next round's stop must not pay for removing this one's checkpoint.
			if dir, err := store.New(b.ckptRoot, nil).KeyDir(store.Ref{Tenant: optin.DefaultTenant, Key: drainKey(j)}); err == nil {
				os.RemoveAll(dir)
			}
		}
	}()
	wts, err := b.startAll(b.tardis, bundles, ids)
	defer func() {
		for _, wt := range wts {
			wt.close()
		}
	}()
	if err != nil {
		return err
	}
	syscall.Sync()
	total, ds, err := concurrently(k, func(j int) (time.Duration, error) {
		d, _, err := b.tardisStop(ids[j])
		return d, err
	})
	if err != nil {
		return err
	}
	g.add("tardis total", total)
	g.add("tardis slowest stop", slowest(ds))
	if *perContainer == 0 {
		if dir, err := b.checkpointDir(drainKey(0)); err == nil {
			*perContainer = treeBytes(dir)
			g.Extra["checkpoint bytes per container"] = fmt.Sprint(*perContainer)
		}
	}
	for _, id := range ids {
		if _, err := b.run(b.tardis, b.rootArgs("delete", id)...); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) drainRunc(g *group, bundles []string, i int) error {
	k := len(bundles)
	ids := make([]string, k)
	for j := range ids {
		ids[j] = fmt.Sprintf("drain%d-runc-%d-%d", k, i, j)
	}
	defer func() {
		for _, id := range ids {
			b.remove(id)
			os.RemoveAll(b.path("runc-img", id))
			os.RemoveAll(b.path("runc-work", id))
		}
	}()
	wts, err := b.startAll(b.runc, bundles, ids)
	defer func() {
		for _, wt := range wts {
			wt.close()
		}
	}()
	if err != nil {
		return err
	}
	syscall.Sync()
	ckpt := make([]time.Duration, k)
	total, ds, err := concurrently(k, func(j int) (time.Duration, error) {
		img, work := b.path("runc-img", ids[j]), b.path("runc-work", ids[j])
		for _, d := range []string{img, work} {
			if err := os.MkdirAll(d, 0o700); err != nil {
				return 0, err
			}
		}
		start := time.Now()
		d, err := b.run(b.runc, b.rootArgs("--criu", b.criu, "checkpoint", "--image-path", img, "--work-path", work, ids[j])...)
		if err != nil {
			return d, err
		}
		ckpt[j] = time.Since(start)
		err = syncTree(img)
		return time.Since(start), err
	})
	if err != nil {
		return err
	}
	g.add("runc + fsync total", total)
	g.add("runc + fsync slowest", slowest(ds))
	g.add("runc total", slowest(ckpt)) // all started together: the last checkpoint's end
	return nil
}

// drainPoint is one k of the drain.
type drainPoint struct {
	K            int     `json:"containers"`
	MiB          int     `json:"mib_each"`
	TardisTotal  *stat   `json:"tardis_total"`
	TardisSlow   *stat   `json:"tardis_slowest_stop"`
	RuncTotal    *stat   `json:"runc_total"`
	RuncFsync    *stat   `json:"runc_fsync_total"`
	RuncSlowest  *stat   `json:"runc_fsync_slowest"`
	DiskTotal    *stat   `json:"disk_write_fsync_total"`
	TotalVsFloor float64 `json:"total_vs_floor"`
	group        *group
}

func (p *drainPoint) fill() {
	g := p.group
	p.TardisTotal, p.TardisSlow = statOf(g, "tardis total"), statOf(g, "tardis slowest stop")
	p.RuncTotal, p.RuncFsync, p.RuncSlowest = statOf(g, "runc total"), statOf(g, "runc + fsync total"), statOf(g, "runc + fsync slowest")
	p.DiskTotal = statOf(g, "disk write+fsync total")
	if p.TardisTotal != nil && p.RuncTotal != nil && p.DiskTotal != nil {
		p.TotalVsFloor = round3(p.TardisTotal.Median / max(p.RuncTotal.Median, p.DiskTotal.Median))
	}
}

package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tardis-runtime/tardis/internal/optin"
	"github.com/tardis-runtime/tardis/internal/state"
	"github.com/tardis-runtime/tardis/internal/store"
)

// The cost curve: per memory size, a container is started, stopped through a checkpoint
// (timed) and brought back from it (timed), by tardis and by bare runc, and the disk's
// own floor for the same bytes is measured, all three alternately in one loop.
//
//   - tardis: `tardis create` + `start` of an opted-in container, then `tardis kill ID 15`
//     (checkpoint: runc checkpoint, the upper directory's changes, manifest, sync,
//     publish), `tardis delete`; then `tardis create` of a new container with the same key
//     (validate, restore the files into a fresh empty upper, runc restore), and `tardis
//     start` (which only records it).
//   - runc: the same container from `runc create` + `start`, then `runc checkpoint`, its
//     images fsynced as tardis does ("runc + fsync"), `runc delete`, then `runc restore
//     -d` of the images, on the same rootfs (overlay upper untouched: bare runc carries no
//     files).
//   - disk: the checkpoint's bytes written to one file and fsynced (the floor of a
//     checkpoint that must be durable), then read back cold (the floor of a restore from
//     storage).
//
// Restores are cold unless -warm-restore: the checkpoint's files, synced, are dropped from
// the page cache first (POSIX_FADV_DONTNEED on those files only), as on a node that
// restores what it did not just write, or after the page cache has moved on.

// checkpointRestore runs one size of one container kind for rounds rounds.
func (b *bench) checkpointRestore(res *results, val *group, o options, mib int, ovl bool, rounds int) error {
	kind, label := "plain", fmt.Sprintf("%d MiB", mib)
	if ovl {
		kind, label = "overlay", fmt.Sprintf("%d MiB + %d MiB files", mib, o.changesMiB)
	}
	name := fmt.Sprintf("%dm-%s", mib, kind)
	key := "bench-" + name
	bundle := b.path("bundles", name)
	if err := b.makeBundle(bundle, optedIn(key), ovl, "/bin/memhog", "-mib", fmt.Sprint(mib)); err != nil {
		return err
	}
	defer os.RemoveAll(bundle)
	mp := filepath.Join(bundle, "rootfs")
	rootfsDesc := "plain directory rootfs"
	if ovl {
		rootfsDesc = fmt.Sprintf("overlay rootfs with %d MiB of files in its upper directory", o.changesMiB)
	}
	temp := "cold: the checkpoint's files dropped from the page cache first"
	if o.warmRestore {
		temp = "warm: the checkpoint's files still in the page cache"
	}
	ck := res.group("checkpoint "+label, fmt.Sprintf("stop of a container touching %d MiB, %s: `tardis kill ID 15` vs `runc checkpoint` (and its images fsynced), and the disk writing the checkpoint's bytes with fsync", mib, rootfsDesc), "runc")
	rs := res.group("restore "+label, fmt.Sprintf("`tardis create` (validate, restore files, runc restore) vs `runc restore -d` of the same kind of image, and the disk reading the checkpoint's bytes; %s; tardis create+start adds the start that follows", temp), "runc")
	floor := []string{"runc", "disk write+fsync"}
	ckGoal, rsGoal := 1.15, 1.10
	if ovl { // bare runc carries no files: informative only
		ckGoal, rsGoal = 0, 0
	}
	ck.compareSlowest("tardis", floor, ckGoal).named(fmt.Sprintf("stop %s <= 1.15x slowest of (runc checkpoint, disk write+fsync)", label))
	ck.compare("tardis", "runc + fsync", 0)
	ck.compare("tardis", "runc", 0)
	rs.compare("tardis", "runc", rsGoal).named(fmt.Sprintf("restore %s <= 1.10x runc restore", label))
	rs.compare("tardis create+start", "runc", 0)
	rs.compare("tardis", "disk read (cold)", 0)

	var imageBytes int64 // what a checkpoint of this container writes (tardis's, all files)
	type diskSample struct {
		bytes int64
		w, r  time.Duration
	}
	var disk []diskSample
	err := b.alternate(rounds, []string{"tardis", "runc", "disk"}, func(i int, v string) error {
		if v == "disk" {
			n := imageBytes
			if n == 0 {
				n = int64(mib+6) << 20 // memhog's Go runtime and busybox: a few MiB more
			}
			p := b.path("disk-floor")
			defer os.Remove(p)
			syscall.Sync()
			w, err := diskWrite(p, n)
			if err != nil {
				return err
			}
			r, err := diskRead(p)
			if err != nil {
				return err
			}
			disk = append(disk, diskSample{n, w, r})
			return nil
		}
		id1, id2 := fmt.Sprintf("%s-%s-a%d", name, v, i), fmt.Sprintf("%s-%s-b%d", name, v, i)
		if ovl {
			if err := b.mountOverlay(mp, name, true); err != nil {
				return err
			}
			defer b.unmountOverlay(mp, name)
		}
		defer b.remove(id1)
		defer b.remove(id2)
		tool := b.runc
		if v == "tardis" {
			tool = b.tardis
		}
		wt, err := b.startContainer(tool, id1, bundle)
		if err != nil {
			return err
		}
		defer wt.close()
		if err := await(wt.ready, "ready", 5*time.Minute); err != nil {
			return err
		}
		img, work := b.path("runc-img", id1), b.path("runc-work", id1)
		defer os.RemoveAll(img)
		defer os.RemoveAll(work)
		syscall.Sync() // nothing of the previous round is left to write back
		if v == "tardis" {
			d, sf, err := b.tardisStop(id1)
			if err != nil {
				return err
			}
			vr := ck.add(v, d)
			for k, x := range sf.Timings {
				vr.part(k, x)
			}
			vr.part("outside_total (start, lock, runc state, node probe, manifest, sign, sync, publish)", float64(d.Microseconds())/1000-sf.Timings["total"])
			if _, err := b.run(b.tardis, b.rootArgs("delete", id1)...); err != nil {
				return err
			}
			dir, err := b.checkpointDir(key)
			if err != nil {
				return err
			}
			if imageBytes == 0 {
				imageBytes = treeBytes(dir)
				ck.Extra["checkpoint bytes (first tardis checkpoint)"] = fmt.Sprint(imageBytes)
			}
			if i == 0 && !ovl && val != nil {
				if _, err := b.validation(val, o.n, key, label); err != nil {
					return err
				}
			}
			if !o.warmRestore {
				syscall.Sync()
				if err := evictTree(dir); err != nil {
					return err
				}
			}
		} else {
			for _, d := range []string{img, work} {
				if err := os.MkdirAll(d, 0o700); err != nil {
					return err
				}
			}
			d, err := b.run(b.runc, b.rootArgs("--criu", b.criu, "checkpoint", "--image-path", img, "--work-path", work, id1)...)
			if err != nil {
				return err
			}
			ck.add(v, d)
			// What tardis adds for durability: every image file and directory synced.
			t := time.Now()
			if err := syncTree(img); err != nil {
				return err
			}
			ck.add("runc + fsync", d+time.Since(t))
			if imageBytes == 0 {
				ck.Extra["runc image bytes"] = fmt.Sprint(treeBytes(img))
			}
			b.remove(id1) // runc checkpoint has already destroyed it (no --leave-running)
			if !o.warmRestore {
				if err := evictTree(img); err != nil {
					return err
				}
			}
		}
		wt.close()
		if ovl && v == "tardis" { // the next incarnation gets a fresh, empty upper directory
			if err := b.unmountOverlay(mp, name); err != nil {
				return err
			}
			if err := b.mountOverlay(mp, name, false); err != nil {
				return err
			}
		}
		wt2, err := b.newWatch()
		if err != nil {
			return err
		}
		defer wt2.close()
		if v == "tardis" {
			d, ds, sf, err := b.tardisRestore(wt2, bundle, id2)
			if err != nil {
				return err
			}
			vr := rs.add(v, d)
			for k, x := range sf.Timings {
				vr.part(k, x)
			}
			vr.part("outside_total (start, config, state files, lock)", float64(d.Microseconds())/1000-sf.Timings["total"])
			// The rest of total: restore stats, commit, consume the checkpoint, remove the
			// work dir, all before create returns.
			vr.part("after_runc_restore (consume checkpoint, cleanup)", sf.Timings["total"]-sf.Timings["validate"]-sf.Timings["restore_files"]-sf.Timings["runc_restore"])
			rs.add("tardis create+start", d+ds).part("start", float64(ds.Microseconds())/1000)
		} else {
			work2 := work + "-restore"
			if err := os.MkdirAll(work2, 0o700); err != nil {
				return err
			}
			defer os.RemoveAll(work2)
			d, err := b.runWith(wt2, b.runc, b.rootArgs("--criu", b.criu, "restore", "-d", "--image-path", img, "--work-path", work2, "--bundle", bundle, id2)...)
			wt2.handedOver()
			if err != nil {
				return err
			}
			rs.add(v, d)
		}
		if st := b.status(id2); st != "running" {
			return fmt.Errorf("%s is %q after the restore", id2, st)
		}
		return nil
	})
	if err != nil {
		return err
	}
	// The disk's floor for exactly the checkpoint's bytes (a round that ran before the first
	// checkpoint wrote an estimate: scaled).
	for _, s := range disk {
		scale := 1.0
		if imageBytes > 0 {
			scale = float64(imageBytes) / float64(s.bytes)
		}
		ck.add("disk write+fsync", time.Duration(float64(s.w)*scale))
		rs.add("disk read (cold)", time.Duration(float64(s.r)*scale))
		ck.v("disk write+fsync").part("GB/s", gbps(s.bytes, float64(s.w.Microseconds())/1000))
		rs.v("disk read (cold)").part("GB/s", gbps(s.bytes, float64(s.r.Microseconds())/1000))
	}
	if !ovl {
		res.Curve = append(res.Curve, &curvePoint{MiB: mib, Bytes: imageBytes, checkpoint: ck, restore: rs})
	}
	return nil
}

// tardisStop stops a running opted-in container through tardis (`kill ID 15`) and checks
// that it was checkpointed.
func (b *bench) tardisStop(id string) (time.Duration, *state.File, error) {
	d, err := b.run(b.tardis, b.rootArgs("kill", id, "15")...)
	if err != nil {
		return d, nil, err
	}
	if st := b.status(id); st != "" {
		return d, nil, fmt.Errorf("%s is %s after tardis kill 15: the checkpoint failed (see %s)", id, st, b.path("tardis.log"))
	}
	sf, err := b.stateFile(id)
	if err != nil || sf.Checkpointed == nil {
		return d, nil, fmt.Errorf("%s: no checkpoint recorded in its state file (%v; see %s)", id, err, b.path("tardis.log"))
	}
	return d, sf, nil
}

// tardisRestore creates a container through tardis that must be restored, then starts it:
// the create's and the start's times.
func (b *bench) tardisRestore(wt *watch, bundle, id string) (create, start time.Duration, sf *state.File, err error) {
	create, err = b.runWith(wt, b.tardis, b.rootArgs("create", "--bundle", bundle, id)...)
	wt.handedOver()
	if err != nil {
		return
	}
	if sf, err = b.stateFile(id); err != nil {
		return
	}
	if sf.Started != state.StartedRestored {
		err = fmt.Errorf("%s was not restored: %s (see %s)", id, sf.Fallback, b.path("tardis.log"))
		return
	}
	start, err = b.run(b.tardis, b.rootArgs("start", id)...)
	return
}

// checkpointDir is the directory of the key's current checkpoint.
func (b *bench) checkpointDir(key string) (string, error) {
	ck, err := store.New(b.ckptRoot, nil).Current(store.Ref{Tenant: optin.DefaultTenant, Key: key})
	if err != nil || ck == nil {
		return "", fmt.Errorf("no checkpoint for %s (%v)", key, err)
	}
	return ck.Dir, nil
}

// stat is a variant's median and spread.
type stat struct {
	Median float64 `json:"median_ms"`
	Min    float64 `json:"min_ms"`
	Max    float64 `json:"max_ms"`
	N      int     `json:"n"`
}

func statOf(g *group, name string) *stat {
	if g == nil {
		return nil
	}
	v := g.find(name)
	if v == nil || len(v.Samples) == 0 {
		return nil
	}
	s := &stat{Median: median(v.Samples), Min: math.Inf(1), Max: math.Inf(-1), N: len(v.Samples)}
	for _, x := range v.Samples {
		s.Min, s.Max = math.Min(s.Min, x), math.Max(s.Max, x)
	}
	return s
}

// curvePoint is one size of the cost curve.
type curvePoint struct {
	MiB   int   `json:"mib"`
	Bytes int64 `json:"checkpoint_bytes"`

	CheckpointTardis *stat `json:"checkpoint_tardis"`
	CheckpointRunc   *stat `json:"checkpoint_runc"`
	CheckpointFsync  *stat `json:"checkpoint_runc_fsync"`
	DiskWrite        *stat `json:"disk_write_fsync"`
	RestoreTardis    *stat `json:"restore_tardis"`
	RestoreStart     *stat `json:"restore_tardis_create_start"`
	RestoreRunc      *stat `json:"restore_runc"`
	DiskRead         *stat `json:"disk_read_cold"`

	DiskWriteGBps       float64 `json:"disk_write_gbps"`
	DiskReadGBps        float64 `json:"disk_read_gbps"`
	CheckpointGBps      float64 `json:"checkpoint_tardis_gbps"`
	RestoreGBps         float64 `json:"restore_tardis_gbps"`
	StopVsFloor         float64 `json:"stop_vs_floor"`
	RestoreVsRunc       float64 `json:"restore_vs_runc"`
	checkpoint, restore *group
}

// fill computes the point from its groups (after finish).
func (p *curvePoint) fill() {
	if p.checkpoint == nil {
		return
	}
	p.CheckpointTardis, p.CheckpointRunc = statOf(p.checkpoint, "tardis"), statOf(p.checkpoint, "runc")
	p.CheckpointFsync, p.DiskWrite = statOf(p.checkpoint, "runc + fsync"), statOf(p.checkpoint, "disk write+fsync")
	p.RestoreTardis, p.RestoreStart = statOf(p.restore, "tardis"), statOf(p.restore, "tardis create+start")
	p.RestoreRunc, p.DiskRead = statOf(p.restore, "runc"), statOf(p.restore, "disk read (cold)")
	if p.DiskWrite != nil {
		p.DiskWriteGBps = round3(gbps(p.Bytes, p.DiskWrite.Median))
	}
	if p.DiskRead != nil {
		p.DiskReadGBps = round3(gbps(p.Bytes, p.DiskRead.Median))
	}
	if p.CheckpointTardis != nil {
		p.CheckpointGBps = round3(gbps(p.Bytes, p.CheckpointTardis.Median))
		if p.CheckpointRunc != nil && p.DiskWrite != nil {
			p.StopVsFloor = round3(p.CheckpointTardis.Median / math.Max(p.CheckpointRunc.Median, p.DiskWrite.Median))
		}
	}
	if p.RestoreTardis != nil {
		p.RestoreGBps = round3(gbps(p.Bytes, p.RestoreTardis.Median))
		if p.RestoreRunc != nil {
			p.RestoreVsRunc = round3(p.RestoreTardis.Median / p.RestoreRunc.Median)
		}
	}
}

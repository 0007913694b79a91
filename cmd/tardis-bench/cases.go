package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tardis-runtime/tardis/internal/criuimg"
	"github.com/tardis-runtime/tardis/internal/optin"
	"github.com/tardis-runtime/tardis/internal/rootfs"
	"github.com/tardis-runtime/tardis/internal/state"
	"github.com/tardis-runtime/tardis/internal/store"
)

// makeBundle writes a bundle whose config.json is `runc spec`'s with no terminal, a
// writable rootfs, PATH=/bin, the given process args and annotations. The rootfs is a
// hard-linked copy of the lower layer unless overlay (then an overlay is mounted there
// per iteration).
func (b *bench) makeBundle(dir string, ann map[string]string, overlay bool, args ...string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if _, err := b.run(b.runc, "spec", "--bundle", dir); err != nil {
		return err
	}
	err := editSpec(dir, func(spec map[string]any) {
		proc := spec["process"].(map[string]any)
		proc["terminal"] = false
		proc["args"] = args
		proc["env"] = []string{"PATH=/bin"}
		spec["root"] = map[string]any{"path": "rootfs", "readonly": false}
		if len(ann) > 0 {
			spec["annotations"] = ann
		}
	})
	if err != nil {
		return err
	}
	if overlay {
		return os.MkdirAll(filepath.Join(dir, "rootfs"), 0o755)
	}
	return linkTree(b.path("lower"), filepath.Join(dir, "rootfs"))
}

// editSpec rewrites a bundle's config.json through f.
func editSpec(bundle string, f func(spec map[string]any)) error {
	p := filepath.Join(bundle, "config.json")
	raw, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	var spec map[string]any
	if err := json.Unmarshal(raw, &spec); err != nil {
		return err
	}
	f(spec)
	out, err := json.MarshalIndent(spec, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(p, out, 0o644)
}

func optedIn(key string) map[string]string {
	return map[string]string{"dev.tardis.enabled": "true", "dev.tardis.key": key}
}

// tools are the three ways of running a pass-through command.
func (b *bench) tools() map[string]string {
	return map[string]string{"runc": b.runc, "go-exec-floor": b.floor, "tardis": b.tardis}
}

var toolOrder = []string{"runc", "go-exec-floor", "tardis"}

// passThrough times the commands tardis hands to runc untouched, on one running container
// that did not opt in.
func (b *bench) passThrough(res *results, n int) error {
	bundle := b.path("bundles", "sleeper")
	if err := b.makeBundle(bundle, nil, false, "/bin/sleep", "1000000"); err != nil {
		return err
	}
	const id = "pt"
	wt, err := b.startContainer(b.runc, id, bundle)
	if err != nil {
		return err
	}
	defer wt.close()
	defer b.remove(id)
	tools := b.tools()
	for _, c := range []struct {
		name string
		args []string
	}{
		{"state", []string{"state", id}},
		{"kill (signal 0)", []string{"kill", id, "0"}},
		{"exec", []string{"exec", id, "/bin/true"}},
		{"list", []string{"list"}},
	} {
		g := res.group("pass-through "+c.name, fmt.Sprintf("`%s --root R %v` on a running container", "<tool>", c.args), "runc")
		g.compare("tardis", "go-exec-floor", 1.05).named(fmt.Sprintf("pass-through %s <= 1.05x the static Go exec floor", c.name))
		g.compare("tardis", "runc", 0)
		g.compare("go-exec-floor", "runc", 0)
		args := b.rootArgs(c.args...)
		for _, t := range toolOrder { // warm the page cache
			if _, err := b.run(tools[t], args...); err != nil {
				return err
			}
		}
		err := b.alternate(n, toolOrder, func(i int, t string) error {
			d, err := b.run(tools[t], args...)
			g.add(t, d)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// createNotOptedIn times create, then delete, of a container that did not opt in.
func (b *bench) createNotOptedIn(res *results, n int) error {
	bundle := b.path("bundles", "plain")
	if err := b.makeBundle(bundle, nil, false, "/bin/sleep", "1000000"); err != nil {
		return err
	}
	gc := res.group("create (not opted in)", "`<tool> create` of a busybox container whose config.json does not opt in (tardis reads it and execs runc)", "runc")
	gd := res.group("delete (not opted in)", "`<tool> delete` of that created container (tardis looks for its state file, then execs runc)", "runc")
	for _, g := range []*group{gc, gd} {
		g.compare("tardis", "go-exec-floor", 1.05)
		g.compare("tardis", "runc", 0)
	}
	tools := b.tools()
	return b.alternate(n+1, toolOrder, func(i int, t string) error {
		id := fmt.Sprintf("np-%s-%d", t, i)
		defer b.remove(id)
		wt, err := b.newWatch()
		if err != nil {
			return err
		}
		defer wt.close()
		dc, err := b.runWith(wt, tools[t], b.rootArgs("create", "--bundle", bundle, id)...)
		wt.handedOver()
		if err != nil {
			return err
		}
		dd, err := b.run(tools[t], b.rootArgs("delete", id)...)
		if err != nil {
			return err
		}
		if b.status(id) != "" {
			return fmt.Errorf("%s still there after delete", id)
		}
		if i > 0 { // the first round warms the page cache
			gc.add(t, dc)
			gd.add(t, dd)
		}
		return nil
	})
}

// nodeProbe times what tardis runs to describe this node (a checkpoint's manifest, and
// every restore's compatibility check): `runc --version` and `criu --version`.
func (b *bench) nodeProbe(res *results, n int) error {
	g := res.group("node probe", "`runc --version` and `criu --version`: tardis runs both on every checkpoint (manifest) and every restore (inside its validate step)", "")
	return b.alternate(n, []string{"runc --version", "criu --version"}, func(i int, v string) error {
		bin := b.runc
		if v == "criu --version" {
			bin = b.criu
		}
		d, err := b.run(bin, "--version")
		g.add(v, d)
		return err
	})
}

// makeChanges writes the change-set tree of the overlay cases: mib files of 1 MiB in 10
// directories, and 200 small files with a user xattr on every tenth.
func (b *bench) makeChanges(mib int) error {
	dir := b.path("changes")
	if _, err := os.Stat(dir); err == nil {
		return nil
	}
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	for i := 0; i < mib; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("d%02d", i%10))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			return err
		}
		buf[0], buf[1] = byte(i), byte(i>>8)
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("big%04d", i)), buf, 0o644); err != nil {
			return err
		}
	}
	small := filepath.Join(dir, "small")
	if err := os.MkdirAll(small, 0o755); err != nil {
		return err
	}
	for i := 0; i < 200; i++ {
		p := filepath.Join(small, fmt.Sprintf("f%03d", i))
		if err := os.WriteFile(p, buf[:4096], 0o640); err != nil {
			return err
		}
		if i%10 == 0 {
			if err := syscall.Setxattr(p, "user.bench", []byte("v"), 0); err != nil {
				return err
			}
		}
	}
	syscall.Sync()
	return nil
}

// files times rootfs.Save and rootfs.Apply (as tardis uses them: Save through a 1 MiB
// buffered writer, Apply from the file into an empty directory, then Commit) against GNU
// tar creating and extracting the same tree, all on the run's filesystem. "rootfs.Save to
// *os.File" is Save handed the archive file itself, which lets it send large files with
// sendfile (a bufio.Writer in between hides the file from it).
func (b *bench) files(res *results, n, mib int) error {
	if err := b.makeChanges(mib); err != nil {
		return err
	}
	src := b.path("changes")
	gs := res.group("files save", fmt.Sprintf("archive the %d MiB change set (%d x 1 MiB + 200 x 4 KiB) to a file", mib, mib), "tar -c")
	ga := res.group("files restore", "extract that archive into an empty directory (owners, modes, times, xattrs)", "tar -x")
	gs.compare("rootfs.Save", "tar -c", 1.0).named(fmt.Sprintf("files: save %d MiB of large files <= 1x tar -c (on disk)", mib))
	gs.compare("rootfs.Save to *os.File", "tar -c", 0)
	ga.compare("rootfs.Apply", "tar -x", 1.0).named(fmt.Sprintf("files: restore %d MiB of large files <= 1x tar -x (on disk)", mib))
	tarArgs := []string{"--xattrs", "--xattrs-include=*"}
	save := func(v, out string) (time.Duration, error) {
		_ = os.Remove(out)
		syscall.Sync()
		if v == "tar -c" {
			return b.run("tar", append(tarArgs, "-cf", out, "-C", src, ".")...)
		}
		start := time.Now()
		f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return 0, err
		}
		if v == "rootfs.Save to *os.File" {
			_, err = rootfs.Save(src, f)
		} else {
			w := bufio.NewWriterSize(f, 1<<20)
			_, err = rootfs.Save(src, w)
			if err == nil {
				err = w.Flush()
			}
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		return time.Since(start), err
	}
	refTardis, refTar := b.path("files", "ref-tardis.tar"), b.path("files", "ref-gnu.tar")
	if err := os.MkdirAll(b.path("files"), 0o755); err != nil {
		return err
	}
	if _, err := save("rootfs.Save", refTardis); err != nil {
		return err
	}
	if _, err := save("tar -c", refTar); err != nil {
		return err
	}
	dst, backup := b.path("files", "dst"), b.path("files", "backup")
	extract := func(v string) (time.Duration, error) {
		for _, d := range []string{dst, backup} {
			if err := os.RemoveAll(d); err != nil {
				return 0, err
			}
			if err := os.Mkdir(d, 0o755); err != nil {
				return 0, err
			}
		}
		syscall.Sync()
		if v == "tar -x" {
			return b.run("tar", append(tarArgs, "--same-owner", "-xpf", refTar, "-C", dst)...)
		}
		start := time.Now()
		f, err := os.Open(refTardis)
		if err != nil {
			return 0, err
		}
		defer f.Close()
		u, _, err := rootfs.Apply(dst, f, backup)
		if err == nil {
			err = u.Commit()
		}
		return time.Since(start), err
	}
	err := b.alternate(n, []string{"rootfs.Save", "rootfs.Save to *os.File", "tar -c", "rootfs.Apply", "tar -x"}, func(i int, v string) error {
		switch v {
		case "rootfs.Save", "rootfs.Save to *os.File", "tar -c":
			d, err := save(v, b.path("files", "out.tar"))
			gs.add(v, d)
			return err
		default:
			d, err := extract(v)
			ga.add(v, d)
			return err
		}
	})
	if err != nil {
		return err
	}
	for _, p := range []string{refTardis, refTar} {
		if st, err := os.Stat(p); err == nil {
			gs.Extra[filepath.Base(p)+" bytes"] = fmt.Sprint(st.Size())
		}
	}
	return os.RemoveAll(b.path("files"))
}

// syncTree fsyncs every file and directory under dir, as tardis does before publishing.
func syncTree(dir string) error {
	return filepath.Walk(dir, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Sync()
	})
}

// validation times, in this process, the validation tardis does before a restore, on the
// real checkpoint of key: criuimg.Validate of the CRIU images, and store.Validate (which
// includes it). The node is the checkpoint's own, so that the compatibility check passes
// without running runc and criu (the node probe is timed on its own).
func (b *bench) validation(g *group, n int, key, label string) (int64, error) {
	s := store.New(b.ckptRoot, nil)
	ck, err := s.Current(store.Ref{Tenant: optin.DefaultTenant, Key: key})
	if err != nil || ck == nil {
		return 0, fmt.Errorf("no checkpoint for %s to validate (%v)", key, err)
	}
	m, err := store.ReadManifest(ck.Dir)
	if err != nil {
		return 0, err
	}
	size := store.DirSize(ck.Images())
	for i := 0; i < n+1; i++ {
		t := time.Now()
		if err := criuimg.Validate(ck.Images()); err != nil {
			return 0, err
		}
		d1 := time.Since(t)
		t = time.Now()
		if _, err := s.Validate(ck, m.Node); err != nil {
			return 0, err
		}
		d2 := time.Since(t)
		if i > 0 {
			g.add("criuimg.Validate "+label, d1)
			g.add("store.Validate "+label, d2)
		}
	}
	gib := float64(size) / (1 << 30)
	g.Extra["images "+label] = fmt.Sprintf("%d bytes (%.3f GiB), %d files listed", size, gib, len(m.Files))
	g.Extra["ms per GiB "+label] = fmt.Sprintf("store.Validate %.3f ms/GiB (median %.3f ms)",
		median(g.v("store.Validate "+label).Samples)/gib, median(g.v("store.Validate "+label).Samples))
	return size, nil
}

// timeToReady compares a slow-starting application's time to ready when started fresh
// through tardis (create + start, then its warm-up) with its time to run again when
// restored through tardis (create + start, until its first tick after the restore).
func (b *bench) timeToReady(res *results, o options) error {
	const key = "bench-warm"
	bundle := b.path("bundles", "warm")
	if err := b.makeBundle(bundle, optedIn(key), false, "/bin/memhog", "-mib", "64", "-warm", o.warm.String(), "-tick", "5ms"); err != nil {
		return err
	}
	g := res.group("time to ready", fmt.Sprintf("an application touching 64 MiB with a %s warm-up: from `tardis create` to ready (fresh: its \"ready\" line; restored: its first \"tick\" line, 5 ms ticks)", o.warm), "fresh start")
	g.compare("restore", "fresh start", 0)
	return b.readyRounds(g, o, bundle, key, "warm")
}

// readyRounds runs rounds of fresh start, checkpoint, restore of the application in bundle.
func (b *bench) readyRounds(g *group, o options, bundle, key, prefix string) error {
	for i := 0; i < o.readyN; i++ {
		if err := b.ctx.Err(); err != nil {
			return err
		}
		if err := b.readyRound(g, o, bundle, key, fmt.Sprintf("%s-%d", prefix, i)); err != nil {
			return fmt.Errorf("round %d: %w", i, err)
		}
	}
	return nil
}

func (b *bench) readyRound(g *group, o options, bundle, key, prefix string) error {
	id1, id2 := prefix+"-a", prefix+"-b"
	defer b.remove(id1)
	defer b.remove(id2)
	launch := func(id string) (*watch, time.Time, error) {
		wt, err := b.newWatch()
		if err != nil {
			return nil, time.Time{}, err
		}
		syscall.Sync()
		t0 := time.Now()
		_, err = b.runWith(wt, b.tardis, b.rootArgs("create", "--bundle", bundle, id)...)
		wt.handedOver()
		if err == nil {
			_, err = b.run(b.tardis, b.rootArgs("start", id)...)
		}
		return wt, t0, err
	}
	wt, t0, err := launch(id1)
	defer wt.close()
	if err != nil {
		return err
	}
	if err := await(wt.ready, "ready", 5*time.Minute); err != nil {
		return err
	}
	if sf, err := b.stateFile(id1); err != nil || sf.Started != state.StartedCreated {
		return fmt.Errorf("%s: not a fresh start (%v)", id1, err)
	}
	g.add("fresh start", wt.readyAt.Sub(t0))
	d, _, err := b.tardisStop(id1)
	if err != nil {
		return err
	}
	g.v("restore").part("stop before it (checkpoint)", float64(d.Microseconds())/1000)
	if _, err := b.run(b.tardis, b.rootArgs("delete", id1)...); err != nil {
		return err
	}
	wt.close()
	dir, err := b.checkpointDir(key)
	if err != nil {
		return err
	}
	g.Extra["checkpoint bytes"] = fmt.Sprint(treeBytes(dir))
	if !o.warmRestore {
		syscall.Sync()
		if err := evictTree(dir); err != nil {
			return err
		}
	}
	wt2, t0, err := launch(id2)
	defer wt2.close()
	if err != nil {
		return err
	}
	if err := await(wt2.tick, "tick", time.Minute); err != nil {
		return err
	}
	sf, err := b.stateFile(id2)
	if err != nil || sf.Started != state.StartedRestored {
		return fmt.Errorf("%s: not restored (%v)", id2, err)
	}
	g.add("restore", wt2.tickAt.Sub(t0))
	return nil
}

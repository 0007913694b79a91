package main

import (
	"crypto/rand"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// signing measures what signed checkpoints cost (signing_key, TARDIS_SIGNING_KEY): the
// same container, touching mib MiB, stopped and restored through tardis without a key and
// with one, alternately. Signing hashes every file of the checkpoint before it is synced
// and published; a signed store's restore hashes them again before CRIU reads them. The
// restores run cold (the checkpoint dropped from the page cache first) and warm.
func (b *bench) signing(res *results, o options) error {
	keyFile := b.path("signing.key")
	key := make([]byte, 48)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		return err
	}
	mib := o.signMiB
	label := fmt.Sprintf("%d MiB", mib)
	ck := res.group("signing: checkpoint "+label, fmt.Sprintf("`tardis kill ID 15` of a container touching %d MiB, without and with signing_key (every file hashed with SHA-256, the manifest signed)", mib), "unsigned")
	cold := res.group("signing: restore "+label+" (cold)", "`tardis create` restoring that checkpoint, its files dropped from the page cache first (a signed store hashes them all before CRIU reads them)", "unsigned")
	warm := res.group("signing: restore "+label+" (warm)", "`tardis create` restoring that checkpoint, its files still in the page cache", "unsigned")
	ck.compare("signed", "unsigned", 0)
	cold.compare("signed", "unsigned", 1.15).named(fmt.Sprintf("signed restore %s (cold) <= 1.15x unsigned", label))
	warm.compare("signed", "unsigned", 1.15).named(fmt.Sprintf("signed restore %s (warm) <= 1.15x unsigned", label))
	bundles := map[bool]string{}
	for _, signed := range []bool{false, true} {
		name := "sign-unsigned"
		if signed {
			name = "sign-signed"
		}
		bundles[signed] = b.path("bundles", name)
		if err := b.makeBundle(bundles[signed], optedIn("bench-"+name), false, "/bin/memhog", "-mib", fmt.Sprint(mib)); err != nil {
			return err
		}
		defer os.RemoveAll(bundles[signed])
	}
	plainEnv := b.env
	defer func() { b.env = plainEnv }()
	var bytes int64
	variants := []string{"unsigned cold", "signed cold", "unsigned warm", "signed warm"}
	err := b.alternate(o.signN, variants, func(i int, v string) error {
		signed, isCold := strings.HasPrefix(v, "signed"), strings.HasSuffix(v, "cold")
		b.env = plainEnv
		if signed {
			b.env = append(append([]string{}, plainEnv...), "TARDIS_SIGNING_KEY="+keyFile)
		}
		short := strings.Fields(v)[0]
		id1, id2 := fmt.Sprintf("sign-%s-%d-a", strings.ReplaceAll(v, " ", "-"), i), fmt.Sprintf("sign-%s-%d-b", strings.ReplaceAll(v, " ", "-"), i)
		defer b.remove(id1)
		defer b.remove(id2)
		wt, err := b.startContainer(b.tardis, id1, bundles[signed])
		if err != nil {
			return err
		}
		defer wt.close()
		if err := await(wt.ready, "ready", 5*time.Minute); err != nil {
			return err
		}
		syscall.Sync()
		d, sf, err := b.tardisStop(id1)
		if err != nil {
			return err
		}
		vr := ck.add(short, d)
		vr.part("total", sf.Timings["total"])
		vr.part("outside_total (incl. digests, sign, sync, publish)", float64(d.Microseconds())/1000-sf.Timings["total"])
		if _, err := b.run(b.tardis, b.rootArgs("delete", id1)...); err != nil {
			return err
		}
		wt.close()
		dir, err := b.checkpointDir("bench-" + map[bool]string{false: "sign-unsigned", true: "sign-signed"}[signed])
		if err != nil {
			return err
		}
		if bytes == 0 {
			bytes = treeBytes(dir)
		}
		syscall.Sync()
		if isCold {
			if err := evictTree(dir); err != nil {
				return err
			}
		}
		wt2, err := b.newWatch()
		if err != nil {
			return err
		}
		defer wt2.close()
		dc, _, sf2, err := b.tardisRestore(wt2, bundles[signed], id2)
		if err != nil {
			return err
		}
		g := warm
		if isCold {
			g = cold
		}
		vr = g.add(short, dc)
		vr.part("validate", sf2.Timings["validate"])
		vr.part("runc_restore", sf2.Timings["runc_restore"])
		return nil
	})
	if err != nil {
		return err
	}
	ck.Extra["checkpoint bytes"] = fmt.Sprint(bytes)
	// The digests' rate, from tardis's own timings: what signing adds to validate (restore)
	// and to the whole stop (checkpoint), per byte.
	rate := func(g *group, part string) float64 {
		s, u := g.find("signed"), g.find("unsigned")
		if s == nil || u == nil {
			return 0
		}
		var ds, du float64
		if part == "" {
			ds, du = median(s.Samples), median(u.Samples)
		} else {
			ds, du = median(s.parts[part]), median(u.parts[part])
		}
		if ds <= du {
			return 0
		}
		return gbps(bytes, ds-du)
	}
	for _, x := range []struct {
		name string
		g    *group
		part string
	}{
		{"checkpoint: signing adds", ck, "outside_total (incl. digests, sign, sync, publish)"},
		{"restore (warm): verifying adds", warm, "validate"},
		{"restore (cold): verifying adds", cold, "validate"},
	} {
		if r := rate(x.g, x.part); r > 0 {
			ck.Extra["digest rate, "+x.name] = fmt.Sprintf("%.2f GB/s of checkpoint", r)
			res.signRates = append(res.signRates, signRate{x.name, r})
		}
	}
	return nil
}

type signRate struct {
	what string
	gbps float64
}

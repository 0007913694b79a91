package main

import (
	"errors"
	"flag"
	"fmt"
	"sort"
	"time"

	"github.com/tardis-runtime/tardis/internal/store"
)

// partialAge is how old a .tmp- directory (or stray .current- link) must be before gc
// calls it left over by a crash.
const partialAge = time.Hour

type gcOpts struct {
	olderThan, asideOlderThan, claimsOlderThan ageFlag
	keep                                       int
	dryRun, json                               bool
}

func init() {
	commands = append(commands, &command{
		name: "gc",
		summary: `Removes, for every key, each under the key's lock (the one tardis takes):
  - the current checkpoint, when made longer ago than --older-than;
  - set-aside checkpoints set aside longer ago than --aside-older-than, and all
    but the newest --keep set-aside ones;
  - ckpt- directories that current does not name (left by a crash between
    publishing a checkpoint and switching current to it);
  - .tmp- directories (and .current- links, and claims whose checkpoint is
    gone) older than 1h (left by a crash while writing a checkpoint);
  - key directories left empty.
A checkpoint claimed by a restore is never removed: a node may be restoring it.
A claim older than --claims-older-than (a node that died while restoring) is
released instead: its checkpoint becomes current again, or is set aside when a
newer one was published since. Without --older-than no current checkpoint is
removed; without --aside-older-than and --keep no set-aside one is; without
--claims-older-than no claim is released. Durations are Go's (90m,
36h) or days (7d). Prints what it removed, or with --dry-run what it would.`,
		flags: func(fs *flag.FlagSet) any {
			o := &gcOpts{keep: -1}
			fs.Var(&o.olderThan, "older-than", "remove current checkpoints made longer ago than `DURATION`")
			fs.Var(&o.asideOlderThan, "aside-older-than", "remove set-aside checkpoints set aside longer ago than `DURATION`")
			fs.Var(&o.claimsOlderThan, "claims-older-than", "release claims made longer ago than `DURATION` (their node died restoring)")
			fs.IntVar(&o.keep, "keep", -1, "keep at most `N` set-aside checkpoints per key, the newest (-1: no limit)")
			fs.BoolVar(&o.dryRun, "dry-run", false, "only print what would be removed; take no lock, remove nothing")
			fs.BoolVar(&o.json, "json", false, "print what was (or would be) removed as JSON")
			return o
		},
		run: runGC,
	})
}

// asideTime is when an entry was set aside: REASON's time, else its directory's.
func asideTime(e store.Entry) time.Time {
	if !e.SetAside.IsZero() {
		return e.SetAside
	}
	if !e.ModTime.IsZero() {
		return e.ModTime
	}
	return e.Stamp
}

// doomed picks what gc removes of one key's entries, with why.
func doomed(entries []store.Entry, o *gcOpts, now time.Time) ([]store.Entry, map[string]string) {
	why := map[string]string{}
	var asides []store.Entry
	for _, e := range entries {
		switch e.Kind {
		case store.KindCurrent:
			if o.olderThan.d > 0 {
				var m *store.Manifest
				if mm, err := store.ReadManifest(e.Dir); err == nil {
					m = mm
				}
				if t := created(e, m); !t.IsZero() && now.Sub(t) > o.olderThan.d {
					why[e.Name] = fmt.Sprintf("made %s ago, older than %s", humanAge(now.Sub(t)), o.olderThan.d)
				}
			}
		case store.KindAside:
			asides = append(asides, e)
			if t := asideTime(e); o.asideOlderThan.d > 0 && now.Sub(t) > o.asideOlderThan.d {
				why[e.Name] = fmt.Sprintf("set aside %s ago, older than %s", humanAge(now.Sub(t)), o.asideOlderThan.d)
			}
		case store.KindClaimed:
			if o.claimsOlderThan.d > 0 && now.Sub(e.Claimed) > o.claimsOlderThan.d {
				why[e.Name] = fmt.Sprintf("claimed by %s %s ago, longer than %s", e.ClaimOwner, humanAge(now.Sub(e.Claimed)), o.claimsOlderThan.d)
			}
		case store.KindOrphan:
			why[e.Name] = "not current: left by a crash while publishing"
		case store.KindPartial:
			t := e.Stamp
			if e.ModTime.After(t) {
				t = e.ModTime
			}
			if now.Sub(t) > partialAge {
				why[e.Name] = fmt.Sprintf("unfinished for %s: left by a crash while writing", humanAge(now.Sub(t)))
			}
		}
	}
	if o.keep >= 0 && len(asides) > o.keep {
		sort.SliceStable(asides, func(i, j int) bool { return asideTime(asides[i]).After(asideTime(asides[j])) })
		for _, e := range asides[o.keep:] {
			if _, ok := why[e.Name]; !ok {
				why[e.Name] = fmt.Sprintf("more than %d set aside", o.keep)
			}
		}
	}
	var out []store.Entry
	for _, e := range entries {
		if _, ok := why[e.Name]; ok {
			out = append(out, e)
		}
	}
	return out, why
}

func runGC(c *cli, opts any, _ []string) error {
	o := opts.(*gcOpts)
	if o.keep < -1 {
		return usageErrorf("--keep %d: want a count (or -1 for no limit)", o.keep)
	}
	refs, err := c.refs()
	if err != nil {
		return err
	}
	all := []removal{}
	var errs []error
	for _, r := range refs {
		rs, err := c.gcKey(r, o)
		all = append(all, rs...)
		if err != nil {
			errs = append(errs, fmt.Errorf("key %s: %w", r, err))
		}
	}
	if err := c.printRemovals(all, o.json, o.dryRun); err != nil {
		return err
	}
	if !o.json && len(all) == 0 {
		fmt.Fprintln(c.stdout, "nothing to remove")
	}
	return errors.Join(errs...)
}

func (c *cli) gcKey(r store.Ref, o *gcOpts) ([]removal, error) {
	if !o.dryRun {
		l, err := c.lockKey(r)
		if err != nil {
			return nil, err
		}
		defer l.Release()
	}
	// Read under the lock: what a finished checkpoint or restore left is what counts.
	entries, entErr := c.store().Entries(r)
	todo, why := doomed(entries, o, c.now())
	rs, err := c.remove(todo, func(e store.Entry) string { return why[e.Name] }, o.dryRun)
	if !o.dryRun {
		c.removeEmptyKeyDir(r) // a key whose last checkpoint was restored leaves its directory
	}
	return rs, errors.Join(entErr, err)
}

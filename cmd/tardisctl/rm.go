package main

import (
	"flag"
	"fmt"

	"github.com/tardis-runtime/tardis/internal/store"
)

type rmOpts struct{ aside, json bool }

func init() {
	commands = append(commands, &command{
		name: "rm",
		args: "[TENANT/]KEY",
		summary: `Removes the key's current checkpoint (of the node's tenant unless TENANT/ is
given), so that its next create starts fresh; with
--aside, its set-aside checkpoints too. Holds the key's lock (the one tardis
takes), so it never races a checkpoint or a restore of the key; waits for it up
to timeouts.lock. Exits 1 when there was nothing to remove.`,
		flags: func(fs *flag.FlagSet) any {
			o := &rmOpts{}
			fs.BoolVar(&o.aside, "aside", false, "also remove the key's set-aside checkpoints")
			fs.BoolVar(&o.json, "json", false, "print what was removed as JSON")
			return o
		},
		run:     runRm,
		minArgs: 1, maxArgs: 1,
	})
}

// removal is one thing rm or gc removed (or, with --dry-run, would remove).
type removal struct {
	Tenant  string `json:"tenant"`
	Key     string `json:"key"`
	Name    string `json:"name"`
	Status  string `json:"status"` // current, set_aside, orphan, partial
	Why     string `json:"why"`
	Outcome string `json:"outcome,omitempty"` // a released claim: what became of its checkpoint
	Removed bool   `json:"removed"`           // false with --dry-run, or when removing failed
	Error   string `json:"error,omitempty"`
}

func runRm(c *cli, opts any, args []string) error {
	o := opts.(*rmOpts)
	key, err := c.parseRef(args[0])
	if err != nil {
		return err
	}
	l, err := c.lockKey(key)
	if err != nil {
		return err
	}
	defer l.Release()
	entries, err := c.store().Entries(key)
	if err != nil {
		return err
	}
	var todo []store.Entry
	for _, e := range entries {
		if e.Kind == store.KindCurrent || (o.aside && e.Kind == store.KindAside) {
			todo = append(todo, e)
		}
	}
	if len(todo) == 0 {
		what := "no current checkpoint"
		if o.aside {
			what = "no current or set-aside checkpoint"
		}
		return notFoundf("key %s has %s", key, what)
	}
	done, err := c.remove(todo, func(store.Entry) string { return "asked" }, false)
	c.removeEmptyKeyDir(key)
	if werr := c.printRemovals(done, o.json, false); werr != nil {
		return werr
	}
	return err
}

// remove removes entries (of keys whose locks the caller holds, unless dryRun).
func (c *cli) remove(entries []store.Entry, why func(store.Entry) string, dryRun bool) ([]removal, error) {
	var out []removal
	var errs []error
	var err error
	for _, e := range entries {
		r := removal{Tenant: e.Tenant, Key: e.Key, Name: e.Name, Status: statusNames[e.Kind][1], Why: why(e)}
		if !dryRun && e.Kind == store.KindClaimed {
			if r.Outcome, err = c.store().ReleaseClaim(e, "released by tardisctl gc: "+r.Why); err != nil {
				r.Error = err.Error()
				errs = append(errs, err)
			} else {
				r.Removed = true
			}
		} else if !dryRun {
			if err := c.store().RemoveEntry(e); err != nil {
				r.Error = err.Error()
				errs = append(errs, err)
			} else {
				r.Removed = true
			}
		}
		out = append(out, r)
	}
	return out, joinErrs(errs)
}

func (c *cli) removeEmptyKeyDir(r store.Ref) { c.store().RemoveKeyDirIfEmpty(r) }

func (c *cli) printRemovals(rs []removal, asJSON, dryRun bool) error {
	if asJSON {
		if rs == nil {
			rs = []removal{}
		}
		return writeJSON(c.stdout, rs)
	}
	for _, r := range rs {
		verb, what := "removed", "remove"
		if r.Status == statusNames[store.KindClaimed][1] {
			verb, what = "released", "release"
		}
		switch {
		case dryRun:
			verb = "would " + what
		case !r.Removed:
			verb = "failed to " + what
		}
		outcome := ""
		if r.Outcome != "" {
			outcome = ": " + r.Outcome
		}
		fmt.Fprintf(c.stdout, "%s %s/%s/%s (%s, %s)%s\n", verb, r.Tenant, r.Key, r.Name, statusNames[kindOf(r.Status)][0], r.Why, outcome)
	}
	return nil
}

// kindOf maps a JSON status back to its store kind.
func kindOf(status string) string {
	for k, v := range statusNames {
		if v[1] == status {
			return k
		}
	}
	return status
}

func joinErrs(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	return fmt.Errorf("%d removals failed; first: %w", len(errs), errs[0])
}

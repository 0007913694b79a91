package main

import (
	"flag"
	"time"

	"github.com/tardis-runtime/tardis/internal/state"
)

type jsonOpt struct{ json bool }

func jsonFlags(fs *flag.FlagSet) any {
	o := &jsonOpt{}
	fs.BoolVar(&o.json, "json", false, "print JSON (stable snake_case field names) instead of a table")
	return o
}

func init() {
	commands = append(commands, &command{
		name: "list",
		summary: `Lists every opted-in container on this node, from tardis's state files (one read
of the state directory): ID, KEY, RUNC ROOT, STARTED ("created", or "restored
from ckpt-..."), AGE (since it was created) and FALLBACK (why a restore that was
tried was not done; "-" when none was needed or it worked).`,
		flags: jsonFlags,
		run:   runList,
	})
}

// listRow is one container in `list --json`.
type listRow struct {
	ID           string     `json:"id"`
	Key          string     `json:"key"`
	KeySource    string     `json:"key_source,omitempty"`
	RuncRoot     string     `json:"runc_root"`
	Bundle       string     `json:"bundle"`
	Started      string     `json:"started"`
	Checkpoint   string     `json:"checkpoint,omitempty"`
	Fallback     string     `json:"fallback,omitempty"`
	NetworkFS    string     `json:"networkfs,omitempty"`
	Created      time.Time  `json:"created"`
	AgeSeconds   *int64     `json:"age_seconds"`
	StartPending bool       `json:"start_pending"`
	Checkpointed *time.Time `json:"checkpointed,omitempty"`
}

func startedText(f *state.File) string {
	if f.Started == state.StartedRestored && f.Checkpoint != "" {
		return "restored from " + f.Checkpoint
	}
	return orDash(f.Started)
}

func runList(c *cli, opts any, _ []string) error {
	files, listErr := c.states().List() // unreadable files: shown after what could be read
	now := c.now()
	if opts.(*jsonOpt).json {
		rows := []listRow{}
		for _, f := range files {
			rows = append(rows, listRow{ID: f.ID, Key: f.Key, KeySource: f.KeySource, RuncRoot: f.Root,
				Bundle: f.Bundle, Started: f.Started, Checkpoint: f.Checkpoint, Fallback: f.Fallback,
				NetworkFS: f.NetworkFS, Created: f.Created, AgeSeconds: ageSeconds(now, f.Created),
				StartPending: f.StartPending, Checkpointed: f.Checkpointed})
		}
		if err := writeJSON(c.stdout, rows); err != nil {
			return err
		}
		return listErr
	}
	t := newTable(c.stdout, "ID", "KEY", "RUNC ROOT", "STARTED", "AGE", "FALLBACK")
	for _, f := range files {
		t.row(f.ID, f.Key, f.Root, startedText(f), ageSince(now, f.Created), orDash(f.Fallback))
	}
	if err := t.flush(); err != nil {
		return err
	}
	return listErr
}

package main

import (
	"fmt"

	"github.com/tardis-runtime/tardis/internal/deadline"
	"github.com/tardis-runtime/tardis/internal/store"
)

func init() {
	commands = append(commands, &command{
		name: "validate",
		args: "KEY|DIR",
		summary: `Checks a checkpoint as a restore on this node would (the key's current one, or
the checkpoint directory DIR, an absolute path): its manifest, every file at its
recorded size, the CRIU images, and this node's architecture, CRIU version and
CPU features. Prints "ok" or the specific error; exits 0 when the checkpoint can
be restored here, 1 when not (or when there is none).`,
		flags:   jsonFlags,
		run:     runValidate,
		minArgs: 1, maxArgs: 1,
	})
}

// validateOut is `validate --json`.
type validateOut struct {
	Key   string     `json:"key"`
	Name  string     `json:"name"`
	Dir   string     `json:"dir"`
	Valid bool       `json:"valid"`
	Error string     `json:"error,omitempty"`
	Node  store.Node `json:"node"` // this node's facts, as checked
}

func runValidate(c *cli, opts any, args []string) error {
	t, err := c.resolveTarget(args[0])
	if err != nil {
		return err
	}
	node := c.node(c)
	ck := &store.Checkpoint{Key: t.key, Name: t.entry.Name, Dir: t.entry.Dir}
	_, err = deadline.Run(c.cfg.Timeouts.Validate.Duration, func() (*store.Manifest, error) {
		return store.Validate(ck, node)
	})
	out := validateOut{Key: t.key, Name: t.entry.Name, Dir: t.entry.Dir, Valid: err == nil, Node: node}
	if err != nil {
		out.Error = err.Error()
	}
	if opts.(*jsonOpt).json {
		if werr := writeJSON(c.stdout, out); werr != nil {
			return werr
		}
	} else if err == nil {
		fmt.Fprintf(c.stdout, "ok: %s can be restored on this node\n", t.entry.Dir)
	} else {
		fmt.Fprintf(c.stdout, "invalid: %s: %v\n", t.entry.Dir, err)
	}
	if err != nil {
		return silent{exitNotValid}
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/tardis-runtime/tardis/internal/fsys"

	"github.com/tardis-runtime/tardis/internal/bundle"
	"github.com/tardis-runtime/tardis/internal/deadline"
	"github.com/tardis-runtime/tardis/internal/gpu"
	"github.com/tardis-runtime/tardis/internal/optin"
	"github.com/tardis-runtime/tardis/internal/store"
)

type validateOpts struct {
	json   bool
	bundle string
	root   string
}

func init() {
	commands = append(commands, &command{
		name: "validate",
		args: "[TENANT/]KEY|DIR",
		summary: `Checks a checkpoint as a restore on this node would (the key's current one, or
the checkpoint directory DIR, an absolute path): every directory and file as
tardis writes them (no symlink, owned by this user, no access for others),
exactly the files its manifest lists at their recorded sizes, its tenant and
key, its signature and digests when this node signs, the CRIU images, this
node's architecture, CRIU version and CPU features, and for a checkpoint with
CUDA state, GPU support and this node's GPUs (driver branch, model, count, free
memory, from nvidia-smi). With --bundle, also what a
create of that bundle would check first: that the container is of the
checkpoint's tenant and runs the same (image, command, working directory,
user). Prints "ok" or why not, naming the check; exits 0 when the checkpoint
can be restored here, 1 when not (or when there is none).`,
		flags: func(fs *flag.FlagSet) any {
			o := &validateOpts{}
			fs.BoolVar(&o.json, "json", false, "print JSON (stable snake_case field names) instead of a line")
			fs.StringVar(&o.bundle, "bundle", "", "also check against the container of bundle `DIR` (its config.json)")
			fs.StringVar(&o.root, "root", "/run/runc", "with --bundle: runc's --root the container would run under (`DIR`)")
			return o
		},
		run:     runValidate,
		minArgs: 1, maxArgs: 1,
	})
}

// validateOut is `validate --json`.
type validateOut struct {
	Tenant string     `json:"tenant"`
	Key    string     `json:"key"`
	Name   string     `json:"name"`
	Dir    string     `json:"dir"`
	Valid  bool       `json:"valid"`
	Check  string     `json:"check,omitempty"` // which check refused it
	Error  string     `json:"error,omitempty"`
	Node   store.Node `json:"node"`          // this node's facts, as checked
	GPU    *gpu.Node  `json:"gpu,omitempty"` // this node's GPUs, when the checkpoint holds CUDA state
}

func runValidate(c *cli, opts any, args []string) error {
	o := opts.(*validateOpts)
	t, err := c.resolveTarget(args[0])
	if err != nil {
		return err
	}
	node := c.node(c)
	ck := &store.Checkpoint{Ref: t.ref, Name: t.entry.Name, Dir: t.entry.Dir}
	m, err := deadline.Run(c.cfg.Timeouts.Validate.Duration, func() (*store.Manifest, error) {
		return c.store().Validate(ck, node)
	})
	check := ""
	var gpus *gpu.Node
	if err != nil {
		check = checkOf(err)
	} else if gpus, err = c.gpuFits(m.GPU); err != nil {
		check, err = "gpu", fmt.Errorf("%w: %w", store.ErrInvalid, err)
	} else if o.bundle != "" {
		check, err = c.sameContainer(m, o.bundle, o.root)
	}
	out := validateOut{Tenant: t.ref.Tenant, Key: t.ref.Key, Name: t.entry.Name, Dir: t.entry.Dir, Valid: err == nil,
		Check: check, Node: node, GPU: gpus}
	if err != nil {
		out.Error = err.Error()
	}
	if o.json {
		if werr := writeJSON(c.stdout, out); werr != nil {
			return werr
		}
	} else if err == nil {
		fmt.Fprintf(c.stdout, "ok: %s can be restored on this node\n", t.entry.Dir)
	} else {
		fmt.Fprintf(c.stdout, "invalid (%s): %s: %v\n", check, t.entry.Dir, err)
	}
	if err != nil {
		return silent{exitNotValid}
	}
	return nil
}

// gpuFits is a restore's GPU check (gpu.GPU.Fits), under the validation deadline.
func (c *cli) gpuFits(rec *gpu.Checkpoint) (*gpu.Node, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeouts.Validate.Duration)
	defer cancel()
	return gpu.New(c.cfg.Config).Fits(ctx, rec)
}

// checkOf names the check that refused a checkpoint, from its error.
func checkOf(err error) string {
	msg := err.Error()
	switch {
	case errors.Is(err, store.ErrUnsafe):
		return "store safety"
	case errors.Is(err, store.ErrSignature):
		return "signature"
	case strings.Contains(msg, "tenant") || strings.Contains(msg, "is for key"):
		return "tenant and key"
	case strings.Contains(msg, "manifest"):
		return "manifest"
	case strings.Contains(msg, "made on") || strings.Contains(msg, "CRIU") || strings.Contains(msg, "CPU"):
		return "node"
	case strings.Contains(msg, "invalid checkpoint image"):
		return "CRIU images"
	case errors.Is(err, deadline.ErrNoAnswer):
		return "deadline"
	}
	return "files"
}

// sameContainer checks the checkpoint against the container a bundle describes, as a
// create of it would: the same tenant, the same identity.
func (c *cli) sameContainer(m *store.Manifest, dir, root string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "bundle", err
	}
	b, err := bundle.Load(fsys.OS{}, abs)
	if err != nil {
		return "bundle", err
	}
	p := optin.Policy{NetworkFSRoots: c.cfg.NetworkFSRoots, Tenant: c.cfg.Tenant, TenantByRoot: c.cfg.TenantByRunc}
	st, err := optin.Resolve(b, "validate", root, p)
	if !st.Enabled {
		return "bundle", fmt.Errorf("the container of %s does not opt in", abs)
	}
	if st.Tenant != m.Tenant {
		return "tenant and key", fmt.Errorf("the container is of tenant %q, the checkpoint of %q", st.Tenant, m.Tenant)
	}
	if d := m.Identity.Diff(st.Identity); d != nil {
		return "identity", fmt.Errorf("the checkpoint is of another container: %s", strings.Join(d, "; "))
	}
	if err != nil {
		return "bundle", err
	}
	return "", nil
}

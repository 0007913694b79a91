package main

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/tardis-runtime/tardis/internal/optin"
	"github.com/tardis-runtime/tardis/internal/store"
)

func init() {
	commands = append(commands, &command{
		name: "checkpoints",
		summary: `Lists every checkpoint under the checkpoint root: TENANT (a Kubernetes namespace
as "k8s-<namespace>", or the node's tenant), KEY, NAME, STATUS ("current";
"claimed" by a restore, with the node holding it and for how long; "set aside"
after a failed restore; "orphan", a ckpt- directory current does not name;
"partial", one being written or left by a crash), SIZE (of the files its
manifest lists), AGE (since it was made), NODE and CONTAINER it was made from,
what it runs (IMAGE, or its command), its CRIU version, and for a set-aside one
the first line of its REASON.`,
		flags: jsonFlags,
		run:   runCheckpoints,
	})
}

// ckptRow is one checkpoint in `checkpoints --json`.
type ckptRow struct {
	Tenant      string          `json:"tenant"`
	Key         string          `json:"key"`
	Name        string          `json:"name"`
	Status      string          `json:"status"` // current, set_aside, orphan, partial
	Dir         string          `json:"dir"`
	SizeBytes   int64           `json:"size_bytes"`
	Created     *time.Time      `json:"created,omitempty"`
	AgeSeconds  *int64          `json:"age_seconds"`
	Node        string          `json:"node,omitempty"`
	ContainerID string          `json:"container_id,omitempty"`
	CriuVersion string          `json:"criu_version,omitempty"`
	Identity    *optin.Identity `json:"identity,omitempty"`
	ClaimedBy   string          `json:"claimed_by,omitempty"`
	Claimed     *time.Time      `json:"claimed,omitempty"`
	SetAside    *time.Time      `json:"set_aside,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	Error       string          `json:"error,omitempty"` // why its manifest could not be read
}

// statusNames are the STATUS words of the table and the JSON status values.
var statusNames = map[string][2]string{
	store.KindCurrent: {"current", "current"},
	store.KindClaimed: {"claimed", "claimed"},
	store.KindAside:   {"set aside", "set_aside"},
	store.KindOrphan:  {"orphan", "orphan"},
	store.KindPartial: {"partial", "partial"},
}

// created is when an entry's checkpoint was made: its manifest's time, else its name's.
func created(e store.Entry, m *store.Manifest) time.Time {
	if m != nil && !m.Created.IsZero() {
		return m.Created
	}
	return e.Stamp
}

func describe(e store.Entry, now time.Time) ckptRow {
	r := ckptRow{Tenant: e.Tenant, Key: e.Key, Name: e.Name, Status: statusNames[e.Kind][1], Dir: e.Dir}
	if e.Kind == store.KindClaimed {
		t := e.Claimed
		r.ClaimedBy, r.Claimed = e.ClaimOwner, &t
	}
	var m *store.Manifest
	if e.Kind != store.KindPartial {
		var err error
		if m, err = store.ReadManifest(e.Dir); err != nil {
			r.Error = err.Error()
			m = nil
		}
	}
	if m != nil {
		r.SizeBytes = m.Size()
		r.Node, r.ContainerID, r.CriuVersion = m.Node.Name, m.ContainerID, m.Node.CriuVersion
		id := m.Identity
		r.Identity = &id
	} else {
		r.SizeBytes = store.DirSize(e.Dir)
	}
	if t := created(e, m); !t.IsZero() {
		r.Created = &t
		r.AgeSeconds = ageSeconds(now, t)
	}
	if e.Kind == store.KindAside {
		if !e.SetAside.IsZero() {
			t := e.SetAside
			r.SetAside = &t
		}
		if reason, err := store.ReadReason(e.Dir); err == nil {
			r.Reason = reason
		} else if r.Error == "" {
			r.Error = err.Error()
		}
	}
	return r
}

func (c *cli) allEntries() ([]store.Entry, error) {
	refs, err := c.refs()
	if err != nil {
		return nil, err
	}
	var all []store.Entry
	var errs []error
	for _, r := range refs {
		es, err := c.store().Entries(r)
		if err != nil {
			errs = append(errs, err)
		}
		all = append(all, es...)
	}
	return all, errors.Join(errs...)
}

func runCheckpoints(c *cli, opts any, _ []string) error {
	entries, entErr := c.allEntries()
	now := c.now()
	rows := []ckptRow{}
	for _, e := range entries {
		rows = append(rows, describe(e, now))
	}
	if opts.(*jsonOpt).json {
		if err := writeJSON(c.stdout, rows); err != nil {
			return err
		}
		return entErr
	}
	t := newTable(c.stdout, "TENANT", "KEY", "NAME", "STATUS", "SIZE", "AGE", "NODE", "CONTAINER", "RUNS", "CRIU", "REASON")
	for i, r := range rows {
		age := "-"
		if r.Created != nil {
			age = ageSince(now, *r.Created)
		}
		note := firstLine(r.Reason)
		status := statusNames[entries[i].Kind][0]
		if r.ClaimedBy != "" {
			status += " by " + r.ClaimedBy + " " + ageSince(now, *r.Claimed) + " ago"
		}
		if r.Error != "" && note == "" && r.Status != "partial" {
			note = "unreadable: " + r.Error
		}
		t.row(r.Tenant, r.Key, r.Name, status, humanSize(r.SizeBytes), age, orDash(r.Node),
			orDash(r.ContainerID), runs(r.Identity), orDash(r.CriuVersion), orDash(note))
	}
	if err := t.flush(); err != nil {
		return err
	}
	return entErr
}

// runs is what a checkpoint's container runs, in a few words: its image, else its command.
func runs(id *optin.Identity) string {
	switch {
	case id == nil:
		return "-"
	case id.Image != "":
		return id.Image
	case len(id.Args) > 0:
		s := strings.Join(id.Args, " ")
		if len(s) > 40 {
			s = s[:37] + "..."
		}
		return strconv.Quote(s)
	}
	return "-"
}

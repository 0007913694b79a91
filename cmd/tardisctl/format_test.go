package main

import (
	"flag"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tardis-runtime/tardis/internal/store"
)

func TestHumanAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Second:                    "-",
		0:                               "0s",
		999 * time.Millisecond:          "0s",
		59 * time.Second:                "59s",
		time.Minute:                     "1m",
		59*time.Minute + 59*time.Second: "59m",
		time.Hour:                       "1h",
		47 * time.Hour:                  "47h",
		48 * time.Hour:                  "2d",
		400 * 24 * time.Hour:            "400d",
	} {
		if got := humanAge(d); got != want {
			t.Errorf("humanAge(%v) = %q, want %q", d, got, want)
		}
	}
	now := time.Date(2025, 1, 2, 0, 0, 0, 0, time.UTC)
	if got := ageSince(now, time.Time{}); got != "-" {
		t.Errorf("ageSince(zero) = %q", got)
	}
	if got := ageSince(now, now.Add(-90*time.Second)); got != "1m" {
		t.Errorf("ageSince(90s ago) = %q", got)
	}
	if ageSeconds(now, time.Time{}) != nil || *ageSeconds(now, now.Add(-90*time.Second)) != 90 {
		t.Error("ageSeconds")
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[int64]string{
		0:                   "0 B",
		1:                   "1 B",
		1023:                "1023 B",
		1024:                "1 KiB",
		1536:                "1.5 KiB",
		10137:               "9.9 KiB",
		10230:               "10 KiB", // 9.99 rounds to 10, not "10.0"
		17017:               "17 KiB",
		1048575:             "1 MiB", // not "1024 KiB"
		1048576:             "1 MiB",
		5 << 30:             "5 GiB",
		3<<40 + 1<<39:       "3.5 TiB",
		1 << 62:             "4 EiB",
		9223372036854775807: "8 EiB",
	} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseAge(t *testing.T) {
	for s, want := range map[string]time.Duration{
		"7d": 7 * 24 * time.Hour, "36h": 36 * time.Hour, "90m": 90 * time.Minute, "1h30m": 90 * time.Minute,
	} {
		if got, err := parseAge(s); err != nil || got != want {
			t.Errorf("parseAge(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	for _, s := range []string{"", "d", "0d", "-1d", "1.5d", "0s", "-5m", "soon", "7 d"} {
		if _, err := parseAge(s); err == nil {
			t.Errorf("parseAge(%q) accepted", s)
		}
	}
}

func TestFirstLineAndOrDash(t *testing.T) {
	if firstLine("a\nb") != "a" || firstLine("") != "" || orDash("") != "-" || orDash("x") != "x" {
		t.Error("firstLine/orDash")
	}
	if got := timings(map[string]float64{"total": 12.5, "a": 1}); got != "a=1 total=12.5" {
		t.Errorf("timings = %q", got)
	}
}

func TestTableReplacesTabsAndNewlines(t *testing.T) {
	var b strings.Builder
	tb := newTable(&b, "A", "B")
	tb.row("x\ty", "line1\nline2")
	_ = tb.flush()
	want := "A     B\nx y   line1 line2\n"
	if b.String() != want {
		t.Errorf("table:\n%q\nwant\n%q", b.String(), want)
	}
}

func TestParseInterspersed(t *testing.T) {
	for _, tt := range []struct {
		args []string
		pos  string
		json bool
	}{
		{[]string{"web"}, "web", false},
		{[]string{"--json", "web"}, "web", true},
		{[]string{"web", "--json"}, "web", true},
		{[]string{"a", "--json", "b"}, "a b", true},
		{[]string{"--", "--json"}, "--json", false},
		{[]string{"a", "--", "-x", "b"}, "a -x b", false},
	} {
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		j := fs.Bool("json", false, "")
		pos, err := parseInterspersed(fs, tt.args)
		if err != nil || strings.Join(pos, " ") != tt.pos || *j != tt.json {
			t.Errorf("parseInterspersed(%q) = %q, json %v, %v; want %q, %v", tt.args, pos, *j, err, tt.pos, tt.json)
		}
	}
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if _, err := parseInterspersed(fs, []string{"web", "--nope"}); err == nil {
		t.Error("unknown flag after an argument accepted")
	}
}

func TestDoomed(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	e := func(kind, name string, age time.Duration) store.Entry {
		return store.Entry{Ref: store.Ref{Tenant: "default", Key: "k"}, Name: name, Kind: kind, Dir: "/nonexistent/" + name,
			Stamp: now.Add(-age), ModTime: now.Add(-age), SetAside: now.Add(-age)}
	}
	claimed := func(name string, age time.Duration) store.Entry {
		c := e(store.KindClaimed, name, 30*24*time.Hour)
		c.ClaimOwner, c.Claimed = "node-b", now.Add(-age)
		return c
	}
	entries := []store.Entry{
		e(store.KindCurrent, "ckpt-cur", 10*24*time.Hour), // no manifest: its name's time counts
		e(store.KindAside, "aside-1", 1*time.Hour),
		e(store.KindAside, "aside-2", 2*time.Hour),
		e(store.KindAside, "aside-3", 3*24*time.Hour),
		e(store.KindOrphan, "ckpt-orphan", time.Minute),
		e(store.KindPartial, ".tmp-old", 2*time.Hour),
		e(store.KindPartial, ".tmp-new", 10*time.Minute),
		// Claimed by restores: one of a node that died three days ago, one in progress.
		claimed("ckpt-claimed-old", 3*24*time.Hour),
		claimed("ckpt-claimed-now", time.Second),
	}
	names := func(es []store.Entry) string {
		var s []string
		for _, e := range es {
			s = append(s, e.Name)
		}
		return strings.Join(s, " ")
	}

	got, _ := doomed(entries, &gcOpts{keep: -1}, now)
	if names(got) != "ckpt-orphan .tmp-old" {
		t.Errorf("no options: %s", names(got))
	}
	got, why := doomed(entries, &gcOpts{keep: 1, olderThan: ageFlag{7 * 24 * time.Hour}, asideOlderThan: ageFlag{48 * time.Hour}}, now)
	if names(got) != "ckpt-cur aside-2 aside-3 ckpt-orphan .tmp-old" {
		t.Errorf("all options: %s", names(got))
	}
	if !strings.Contains(why["aside-3"], "set aside 3d ago") || why["aside-2"] != "more than 1 set aside" {
		t.Errorf("reasons: %q", why)
	}
	got, _ = doomed(entries, &gcOpts{keep: 0}, now)
	if names(got) != "aside-1 aside-2 aside-3 ckpt-orphan .tmp-old" {
		t.Errorf("keep 0: %s", names(got))
	}
	// A claimed checkpoint is never garbage, however old, unless claims past an age are
	// asked for; then only the old claim.
	got, why = doomed(entries, &gcOpts{keep: -1, claimsOlderThan: ageFlag{24 * time.Hour}}, now)
	if names(got) != "ckpt-orphan .tmp-old ckpt-claimed-old" {
		t.Errorf("claims older than 1d: %s", names(got))
	}
	if !strings.Contains(why["ckpt-claimed-old"], "claimed by node-b 3d ago") {
		t.Errorf("claim reason: %q", why["ckpt-claimed-old"])
	}
}

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// humanAge is a duration as "45s", "12m", "3h", "5d" (the largest whole unit, as docker ps
// shows ages); "-" for a negative or unknown one.
func humanAge(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int64(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int64(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int64(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int64(d/(24*time.Hour)))
}

// ageSince is humanAge of now - t; "-" when t is unknown.
func ageSince(now, t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return humanAge(now.Sub(t))
}

// ageSeconds is now - t in whole seconds, for --json; nil when t is unknown.
func ageSeconds(now, t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	s := int64(now.Sub(t) / time.Second)
	return &s
}

// humanSize is a byte count in binary units: "512 B", "1.5 KiB", "12 MiB", "3.2 GiB".
func humanSize(n int64) string {
	if n < 1024 {
		return fmt.Sprintf("%d B", n)
	}
	units := []string{"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n) / 1024
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if v < 10 {
		s := strconv.FormatFloat(v, 'f', 1, 64)
		if s == "10.0" { // 9.95 and up round to the next width
			return "10 " + units[i]
		}
		return strings.TrimSuffix(s, ".0") + " " + units[i]
	}
	if v >= 1023.5 && i < len(units)-1 { // would print as "1024 KiB"
		return "1 " + units[i+1]
	}
	return fmt.Sprintf("%.0f %s", v, units[i])
}

// parseAge reads a duration for gc: Go's ("90m", "12h30m") or whole days ("7d").
func parseAge(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil || n == 0 {
			return 0, fmt.Errorf("invalid duration %q (want e.g. 7d, 36h, 90m)", s)
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 7d, 36h, 90m)", s)
	}
	return d, nil
}

// ageFlag is a flag.Value for parseAge; zero means "not given".
type ageFlag struct{ d time.Duration }

func (a *ageFlag) String() string {
	if a == nil || a.d == 0 {
		return ""
	}
	return a.d.String()
}

func (a *ageFlag) Set(s string) error {
	d, err := parseAge(s)
	if err != nil {
		return err
	}
	a.d = d
	return nil
}

// firstLine is s up to its first newline.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// orDash is s, or "-" when empty (a table cell must not be empty).
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// table writes tab-separated rows aligned, as kubectl and docker do.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)}
	if len(header) > 0 {
		t.row(header...)
	}
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		cells[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// writeJSON writes v indented, with a final newline.
func writeJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// timings is a timings_ms map as "a=1.2 b=3" in sorted order, "-" when empty.
func timings(m map[string]float64) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+strconv.FormatFloat(m[k], 'f', -1, 64))
	}
	return strings.Join(parts, " ")
}

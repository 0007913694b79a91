package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// results is everything one run measured.
type results struct {
	Machine map[string]string `json:"machine"`
	Params  map[string]any    `json:"params"`
	Started time.Time         `json:"started"`
	Elapsed string            `json:"elapsed"`
	Groups  []*group          `json:"cases"`
}

// group is one case: variants timed alternately in one loop, compared with a baseline.
type group struct {
	Name        string            `json:"name"`
	Description string            `json:"description"`
	Baseline    string            `json:"baseline"`
	Variants    []*variant        `json:"variants"`
	Comparisons []*comparison     `json:"comparisons,omitempty"`
	Notes       []string          `json:"notes,omitempty"`
	Extra       map[string]string `json:"extra,omitempty"`
}

type variant struct {
	Name      string               `json:"name"`
	N         int                  `json:"n"`
	Median    float64              `json:"median_ms"`
	Min       float64              `json:"min_ms"`
	Max       float64              `json:"max_ms"`
	Samples   []float64            `json:"samples_ms"`
	Breakdown map[string]float64   `json:"breakdown_median_ms,omitempty"`
	parts     map[string][]float64 // breakdown samples
}

// comparison is a variant's median against a reference variant's, with a goal if there is one.
type comparison struct {
	Variant   string  `json:"variant"`
	Reference string  `json:"reference"`
	Ratio     float64 `json:"ratio"`
	AddedMs   float64 `json:"added_ms"`
	Goal      float64 `json:"goal_ratio,omitempty"` // at most this ratio; 0: informative
	Met       *bool   `json:"goal_met,omitempty"`
}

func (r *results) group(name, desc, baseline string) *group {
	g := &group{Name: name, Description: desc, Baseline: baseline, Extra: map[string]string{}}
	r.Groups = append(r.Groups, g)
	return g
}

func (g *group) v(name string) *variant {
	for _, v := range g.Variants {
		if v.Name == name {
			return v
		}
	}
	v := &variant{Name: name, parts: map[string][]float64{}}
	g.Variants = append(g.Variants, v)
	return v
}

func (g *group) add(name string, d time.Duration) *variant {
	v := g.v(name)
	v.Samples = append(v.Samples, float64(d.Microseconds())/1000)
	return v
}

// part records a breakdown sample (tardis's own timings_ms, or derived).
func (v *variant) part(name string, ms float64) { v.parts[name] = append(v.parts[name], ms) }

func (g *group) compare(variant, ref string, goal float64) {
	g.Comparisons = append(g.Comparisons, &comparison{Variant: variant, Reference: ref, Goal: goal})
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := append([]float64{}, xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// finish computes the statistics and comparisons.
func (r *results) finish() {
	for _, g := range r.Groups {
		for _, v := range g.Variants {
			v.N = len(v.Samples)
			if v.N == 0 {
				continue
			}
			v.Median = median(v.Samples)
			v.Min, v.Max = v.Samples[0], v.Samples[0]
			for _, x := range v.Samples {
				v.Min, v.Max = math.Min(v.Min, x), math.Max(v.Max, x)
			}
			if len(v.parts) > 0 {
				v.Breakdown = map[string]float64{}
				for k, xs := range v.parts {
					v.Breakdown[k] = round(median(xs))
				}
			}
		}
		for _, c := range g.Comparisons {
			a, b := g.find(c.Variant), g.find(c.Reference)
			if a == nil || b == nil || a.N == 0 || b.N == 0 {
				continue
			}
			c.Ratio, c.AddedMs = round3(a.Median/b.Median), round(a.Median-b.Median)
			if c.Goal > 0 {
				met := c.Ratio <= c.Goal
				c.Met = &met
			}
		}
	}
}

func (g *group) find(name string) *variant {
	for _, v := range g.Variants {
		if v.Name == name {
			return v
		}
	}
	return nil
}

func round(x float64) float64  { return math.Round(x*100) / 100 }
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }

// print writes the table: per case and variant, median, min, max, and the ratio and added
// milliseconds against the case's baseline; then the comparisons with their goals.
func (r *results) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "case\tvariant\tn\tmedian ms\tmin ms\tmax ms\tratio\tadded ms\t")
	for _, g := range r.Groups {
		base := g.find(g.Baseline)
		for _, v := range g.Variants {
			if v.N == 0 {
				continue
			}
			ratio, added := "", ""
			if base != nil && base.N > 0 && v != base {
				ratio = fmt.Sprintf("%.3f", v.Median/base.Median)
				added = fmt.Sprintf("%+.2f", v.Median-base.Median)
			} else if v == base {
				ratio, added = "(base)", ""
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.2f\t%.2f\t%s\t%s\t\n", g.Name, v.Name, v.N, v.Median, v.Min, v.Max, ratio, added)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	fmt.Fprintln(w, "comparisons (medians):")
	for _, g := range r.Groups {
		for _, c := range g.Comparisons {
			if c.Ratio == 0 {
				continue
			}
			goal := ""
			if c.Met != nil {
				verdict := "MISSED"
				if *c.Met {
					verdict = "met"
				}
				goal = fmt.Sprintf("  goal <= %.2fx: %s", c.Goal, verdict)
			}
			fmt.Fprintf(w, "  %-34s %-22s vs %-18s %6.3fx %+9.2f ms%s\n", g.Name, c.Variant, c.Reference, c.Ratio, c.AddedMs, goal)
		}
	}
	first := true
	for _, g := range r.Groups {
		for _, v := range g.Variants {
			if len(v.Breakdown) == 0 {
				continue
			}
			if first {
				fmt.Fprintln(w, "\nbreakdown (medians of tardis's own timings_ms, and derived):")
				first = false
			}
			keys := make([]string, 0, len(v.Breakdown))
			for k := range v.Breakdown {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			var parts []string
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("%s=%.1f", k, v.Breakdown[k]))
			}
			fmt.Fprintf(w, "  %-34s %-22s %s\n", g.Name, v.Name, strings.Join(parts, " "))
		}
	}
	for _, g := range r.Groups {
		keys := make([]string, 0, len(g.Extra))
		for k := range g.Extra {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "  %s: %s: %s\n", g.Name, k, g.Extra[k])
		}
		for _, n := range g.Notes {
			fmt.Fprintf(w, "  %s: %s\n", g.Name, n)
		}
	}
}

func (r *results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

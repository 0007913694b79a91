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
	// Goals is every goal of the run with its verdict (from the comparisons, and the
	// goals that are not a ratio of two medians, such as a throughput).
	Goals []*goal `json:"goals"`
	// The cost curve, the drain and the grace-period runs, summarised for the plot.
	Curve   []*curvePoint `json:"curve,omitempty"`
	Drain   []*drainPoint `json:"drain,omitempty"`
	Grace   []*graceRun   `json:"grace,omitempty"`
	GoBench []*goBench    `json:"go_benchmarks,omitempty"`
	Steps   []stepTime    `json:"steps,omitempty"` // how long each case took
	Fit     *fit          `json:"stop_fit,omitempty"`

	signRates []signRate
}

// stepTime is how long one case of the run took.
type stepTime struct {
	Case    string  `json:"case"`
	Seconds float64 `json:"seconds"`
}

// goal is one goal of the issue and how this run did against it.
type goal struct {
	Name     string  `json:"name"`
	Measured float64 `json:"measured"`
	Unit     string  `json:"unit"`            // "x" (a ratio) or a throughput unit
	Op       string  `json:"op"`              // "<=" or ">="
	Target   float64 `json:"target"`          // the goal
	Met      bool    `json:"met"`             // measured Op target
	Detail   string  `json:"detail"`          // what was compared
	Limit    string  `json:"limit,omitempty"` // the measured floor that limits it, when missed
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
	Variant   string `json:"variant"`
	Reference string `json:"reference"`
	// Of: the reference is the slowest of these variants' medians (Reference names it).
	Of       []string `json:"reference_of,omitempty"`
	Goal     float64  `json:"goal_ratio,omitempty"` // at most this ratio; 0: informative
	GoalName string   `json:"goal_name,omitempty"`  // listed among the run's goals`
	Ratio    float64  `json:"ratio"`
	AddedMs  float64  `json:"added_ms"`
	Met      *bool    `json:"goal_met,omitempty"`
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

func (g *group) compare(variant, ref string, goal float64) *comparison {
	c := &comparison{Variant: variant, Reference: ref, Goal: goal}
	g.Comparisons = append(g.Comparisons, c)
	return c
}

// compareSlowest compares variant with the slowest of refs (their medians).
func (g *group) compareSlowest(variant string, refs []string, goal float64) *comparison {
	c := g.compare(variant, "slowest of "+strings.Join(refs, ", "), goal)
	c.Of = refs
	return c
}

// named lists the comparison's verdict among the run's goals under name.
func (c *comparison) named(name string) *comparison { c.GoalName = name; return c }

// addGoal records a goal that is not a ratio of two medians.
func (r *results) addGoal(name string, measured float64, unit, op string, target float64, detail string) *goal {
	met := measured <= target
	if op == ">=" {
		met = measured >= target
	}
	gl := &goal{Name: name, Measured: round3(measured), Unit: unit, Op: op, Target: target, Met: met, Detail: detail}
	r.Goals = append(r.Goals, gl)
	return gl
}

func (r *results) findGroup(name string) *group {
	for _, g := range r.Groups {
		if g.Name == name {
			return g
		}
	}
	return nil
}

// med is a variant's median in ms, NaN when it has no samples.
func (g *group) med(name string) float64 {
	if g == nil {
		return math.NaN()
	}
	if v := g.find(name); v != nil && len(v.Samples) > 0 {
		return median(v.Samples)
	}
	return math.NaN()
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
			a := g.find(c.Variant)
			refs := c.Of
			if len(refs) == 0 {
				refs = []string{c.Reference}
			}
			ref, slowest := math.NaN(), ""
			for _, name := range refs {
				if b := g.find(name); b != nil && b.N > 0 && !(b.Median <= ref) {
					ref, slowest = b.Median, name
				}
			}
			if a == nil || a.N == 0 || math.IsNaN(ref) {
				continue
			}
			if len(c.Of) > 0 {
				c.Reference = slowest + " (slowest of " + strings.Join(c.Of, ", ") + ")"
			}
			c.Ratio, c.AddedMs = round3(a.Median/ref), round(a.Median-ref)
			if c.Goal > 0 {
				met := c.Ratio <= c.Goal
				c.Met = &met
				if c.GoalName != "" {
					r.Goals = append(r.Goals, &goal{Name: c.GoalName, Measured: c.Ratio, Unit: "x", Op: "<=",
						Target: c.Goal, Met: met, Detail: fmt.Sprintf("%s: %s %.1f ms vs %s %.1f ms (medians)", g.Name, c.Variant, a.Median, c.Reference, ref)})
				}
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
	r.printCurve(w)
	r.printDrain(w)
	r.printGrace(w)
	r.printGoals(w)
}

// printGoals lists every goal with its verdict.
func (r *results) printGoals(w io.Writer) {
	if len(r.Goals) == 0 {
		return
	}
	fmt.Fprintln(w, "\ngoals:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, g := range r.Goals {
		verdict := "MISSED"
		if g.Met {
			verdict = "met"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%.3f %s\t(goal %s %g %s)\t%s\n", verdict, g.Name, g.Measured, g.Unit, g.Op, g.Target, g.Unit, g.Detail)
		if g.Limit != "" {
			fmt.Fprintf(tw, "  \t\t\t\tlimit: %s\n", g.Limit)
		}
	}
	tw.Flush()
}

func (r *results) writeJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

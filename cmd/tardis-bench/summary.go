package main

import (
	"fmt"
	"io"
	"math"
	"strings"
	"text/tabwriter"
)

// conclude fills the summaries from the finished groups and adds the goals that are not a
// ratio of two medians: the digests' rate, and what the curve says of a 30 s grace period.
func (r *results) conclude() {
	for _, p := range r.Curve {
		p.fill()
	}
	for _, p := range r.Drain {
		p.fill()
	}
	for _, s := range r.signRates {
		if strings.HasPrefix(s.what, "restore (cold)") {
			continue // the disk's read is in it: informative (ckeck the group's Extra)
		}
		r.addGoal("digests ("+s.what+") >= 1 GB/s", s.gbps, "GB/s", ">=", 1.0,
			"from tardis's timings: the time signing adds over the unsigned median, per byte of checkpoint")
	}
	if fit := r.stopFit(); fit != nil {
		r.Fit = fit
	}
}

// stopFit says what the curve implies for a grace period of 30 s: a straight line
// through the tardis stop times of the sizes of 512 MiB and more (least squares), and,
// more cautiously, the marginal throughput between the two largest sizes carried on from
// the largest one (the curve steepens where the dump meets the kernel's dirty-page limits:
// a line through all sizes would promise too much).
func (r *results) stopFit() *fit {
	var xs, ys []float64
	for _, p := range r.Curve {
		if p.MiB >= 512 && p.CheckpointTardis != nil && p.Bytes > 0 {
			xs = append(xs, float64(p.Bytes))
			ys = append(ys, p.CheckpointTardis.Median/1000)
		}
	}
	if len(xs) < 2 {
		return nil
	}
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx, sy, sxx, sxy = sx+xs[i], sy+ys[i], sxx+xs[i]*xs[i], sxy+xs[i]*ys[i]
	}
	n := float64(len(xs))
	slope := (n*sxy - sx*sy) / (n*sxx - sx*sx)
	icpt := (sy - slope*sx) / n
	f := &fit{}
	if slope > 0 {
		f.FixedS, f.GBps = round3(icpt), round3(1/slope/1e9)
		f.Grace30GiB = round3((30 - icpt) / slope / (1 << 30))
	}
	k := len(xs) - 1
	if m := (ys[k] - ys[k-1]) / (xs[k] - xs[k-1]); m > 0 && ys[k] < 30 {
		f.MarginalGBps = round3(1 / m / 1e9)
		f.Grace30Bytes = int64(xs[k] + (30-ys[k])/m)
		f.Grace30MarginalGiB = round3(float64(f.Grace30Bytes) / (1 << 30))
	}
	return f
}

// fit is what the curve implies for a 30 s grace period.
type fit struct {
	FixedS             float64 `json:"fixed_s"`
	GBps               float64 `json:"throughput_gbps"`
	Grace30GiB         float64 `json:"largest_checkpoint_gib_for_30s_line"`
	MarginalGBps       float64 `json:"marginal_throughput_gbps"`
	Grace30Bytes       int64   `json:"largest_checkpoint_bytes_for_30s"`
	Grace30MarginalGiB float64 `json:"largest_checkpoint_gib_for_30s"`
}

func (r *results) printCurve(w io.Writer) {
	if len(r.Curve) == 0 {
		return
	}
	fmt.Fprintln(w, "\ncost curve (medians, s; the disk's floor measured in the same loop):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "MiB\tckpt bytes\ttardis stop\trunc ckpt\trunc+fsync\tdisk write\tstop/floor\ttardis restore\trunc restore\tdisk read\trestore/runc\twrite GB/s\tread GB/s\t")
	for _, p := range r.Curve {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%.3f\t%s\t%s\t%s\t%.3f\t%.2f\t%.2f\t\n", p.MiB, p.Bytes,
			sec(p.CheckpointTardis), sec(p.CheckpointRunc), sec(p.CheckpointFsync), sec(p.DiskWrite), p.StopVsFloor,
			sec(p.RestoreTardis), sec(p.RestoreRunc), sec(p.DiskRead), p.RestoreVsRunc, p.DiskWriteGBps, p.DiskReadGBps)
	}
	tw.Flush()
	if f := r.Fit; f != nil {
		fmt.Fprintf(w, "  tardis stop ~ %.2f s + bytes / %.3f GB/s (least squares, sizes >= 512 MiB): 30 s holds about %.1f GiB\n", f.FixedS, f.GBps, f.Grace30GiB)
		fmt.Fprintf(w, "  between the two largest sizes: %.3f GB/s; carried on from the largest, 30 s holds a checkpoint of about %.1f GiB\n", f.MarginalGBps, f.Grace30MarginalGiB)
	}
}

func (r *results) printDrain(w io.Writer) {
	if len(r.Drain) == 0 {
		return
	}
	fmt.Fprintln(w, "\ndrain (k containers stopped at once; medians, s):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "k\tMiB each\ttardis total\ttardis slowest\trunc ckpt total\trunc+fsync total\tdisk write total\ttotal/floor\t")
	for _, p := range r.Drain {
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%.3f\t\n", p.K, p.MiB, sec(p.TardisTotal), sec(p.TardisSlow),
			sec(p.RuncTotal), sec(p.RuncFsync), sec(p.DiskTotal), p.TotalVsFloor)
	}
	tw.Flush()
}

func (r *results) printGrace(w io.Writer) {
	for _, g := range r.Grace {
		fmt.Fprintf(w, "\ngrace period: %s (%d MiB): %s\n", g.Name, g.MiB, g.Description)
		fmt.Fprintf(w, "  crictl stop took %.0f ms, exit %d %s\n", g.StopMs, g.StopExit, oneLine(g.StopOutput))
		for _, e := range g.Timeline {
			end := ""
			switch {
			case e.EndMs > 0:
				end = fmt.Sprintf("-> %8.0f", e.EndMs)
			case e.EndMs < 0:
				end = "-> (running)"
			}
			fmt.Fprintf(w, "  %8.0f ms %-13s %-10s %s\n", e.AtMs, end, e.Who, e.What)
		}
		fmt.Fprintf(w, "  state after: %s\n  checkpoint: %s\n", g.StateAfter, g.Checkpointed)
		for _, l := range g.Leftovers {
			fmt.Fprintf(w, "  left behind: %s\n", l)
		}
		if g.Retry != "" {
			fmt.Fprintf(w, "  retry: %s\n", g.Retry)
		}
		if g.SecondKill != "" {
			fmt.Fprintf(w, "  second kill: %s\n", g.SecondKill)
		}
		fmt.Fprintf(w, "  the pod made again: %s; hung: %v\n", g.Restore, g.Hung)
		for _, l := range g.TardisLog {
			fmt.Fprintf(w, "  tardis.log: %s\n", l)
		}
	}
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:197] + "..."
	}
	return s
}

func sec(s *stat) string {
	if s == nil || math.IsNaN(s.Median) {
		return "-"
	}
	return fmt.Sprintf("%.2f", s.Median/1000)
}

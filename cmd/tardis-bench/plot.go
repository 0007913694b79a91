package main

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
)

// The plot of a run: an SVG drawn here (no plotting library), three panels side by side.
// Stop time against the container's memory (tardis, bare runc checkpoint, bare runc with
// its images fsynced, and the disk writing the same bytes with fsync); restore time
// against memory (tardis, bare runc restore, the disk reading the bytes cold); and the
// drain, k containers stopped at once (total and slowest stop against k). Medians, with a
// whisker from the fastest to the slowest run.

type point struct{ x, y, lo, hi float64 }

type series struct {
	name  string
	color string
	dash  string // stroke-dasharray, "" for a solid line
	pts   []point
}

type panel struct {
	title, xlabel, ylabel string
	xlog                  bool      // log2 x axis
	xticks                []float64 // where the x ticks go (the measured sizes or counts)
	series                []series
	note                  string // a line under the panel
}

const (
	colTardis = "#1f5fbf"
	colRunc   = "#e07b00"
	colFsync  = "#b8860b"
	colDisk   = "#6b6b6b"
)

// fromStat makes a point of a median and its spread, in seconds.
func fromStat(x float64, s *stat) (point, bool) {
	if s == nil || s.N == 0 {
		return point{}, false
	}
	return point{x: x, y: s.Median / 1000, lo: s.Min / 1000, hi: s.Max / 1000}, true
}

// panels builds the plot's panels from a run's results.
func (r *results) panels() []panel {
	var out []panel
	if len(r.Curve) > 0 {
		var xt []float64
		stop := []series{
			{name: "tardis stop (kill 15)", color: colTardis},
			{name: "bare runc checkpoint", color: colRunc, dash: "6 4"},
			{name: "bare runc checkpoint + fsync", color: colFsync, dash: "2 3"},
			{name: "disk: write bytes + fsync", color: colDisk, dash: "9 3 2 3"},
		}
		rest := []series{
			{name: "tardis restore (create)", color: colTardis},
			{name: "bare runc restore -d", color: colRunc, dash: "6 4"},
			{name: "disk: read bytes (cold)", color: colDisk, dash: "9 3 2 3"},
		}
		var wr, rd []float64
		for _, p := range r.Curve {
			x := float64(p.MiB)
			xt = append(xt, x)
			for i, s := range []*stat{p.CheckpointTardis, p.CheckpointRunc, p.CheckpointFsync, p.DiskWrite} {
				if pt, ok := fromStat(x, s); ok {
					stop[i].pts = append(stop[i].pts, pt)
				}
			}
			for i, s := range []*stat{p.RestoreTardis, p.RestoreRunc, p.DiskRead} {
				if pt, ok := fromStat(x, s); ok {
					rest[i].pts = append(rest[i].pts, pt)
				}
			}
			if p.DiskWriteGBps > 0 {
				wr = append(wr, p.DiskWriteGBps)
			}
			if p.DiskReadGBps > 0 {
				rd = append(rd, p.DiskReadGBps)
			}
		}
		out = append(out,
			panel{title: "Stop: checkpoint of a running container", xlabel: "memory the container touches (MiB)", ylabel: "seconds",
				xlog: true, xticks: xt, series: stop, note: fmt.Sprintf("disk write with fsync: median %.2f GB/s", median(wr))},
			panel{title: "Restore (images not in the page cache)", xlabel: "memory the container touches (MiB)", ylabel: "seconds",
				xlog: true, xticks: xt, series: rest, note: fmt.Sprintf("disk read, cold: median %.2f GB/s", median(rd))})
	}
	if len(r.Drain) > 0 {
		var xt []float64
		dr := []series{
			{name: "tardis: all stopped", color: colTardis},
			{name: "tardis: slowest single stop", color: colTardis, dash: "2 3"},
			{name: "bare runc checkpoint + fsync: all", color: colFsync, dash: "6 4"},
			{name: "disk: k writers + fsync", color: colDisk, dash: "9 3 2 3"},
		}
		mib := 0
		for _, p := range r.Drain {
			x := float64(p.K)
			xt = append(xt, x)
			mib = p.MiB
			for i, s := range []*stat{p.TardisTotal, p.TardisSlow, p.RuncFsync, p.DiskTotal} {
				if pt, ok := fromStat(x, s); ok {
					dr[i].pts = append(dr[i].pts, pt)
				}
			}
		}
		out = append(out, panel{title: fmt.Sprintf("Drain: k containers of %d MiB stopped at once", mib),
			xlabel: "containers stopped together (k)", ylabel: "seconds", xticks: xt, series: dr})
	}
	return out
}

// svg draws the panels side by side under a title and a subtitle.
func svg(title, subtitle string, panels []panel) []byte {
	const pw, ph, top, gap = 430.0, 430.0, 62.0, 14.0
	w := float64(len(panels))*pw + float64(len(panels)+1)*gap
	h := top + ph + 10
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="Helvetica, Arial, sans-serif">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="24" font-size="17" font-weight="bold">%s</text>`+"\n", gap, esc(title))
	fmt.Fprintf(&b, `<text x="%.0f" y="44" font-size="11.5" fill="#444">%s</text>`+"\n", gap, esc(subtitle))
	for i, p := range panels {
		drawPanel(&b, p, gap+float64(i)*(pw+gap), top, pw, ph)
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func drawPanel(b *bytes.Buffer, p panel, x0, y0, w, h float64) {
	// The plot area inside the panel, room left for the labels and the legend below.
	const ml, mr, mt = 52.0, 14.0, 26.0
	legendH := 16.0*float64(len(p.series)) + 8
	mb := 44.0 + legendH
	if p.note != "" {
		mb += 14
	}
	ax, ay, aw, ah := x0+ml, y0+mt, w-ml-mr, h-mt-mb
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="13" font-weight="bold">%s</text>`+"\n", x0, y0+12, esc(p.title))

	xmin, xmax := math.Inf(1), math.Inf(-1)
	ymax := 0.0
	for _, s := range p.series {
		for _, pt := range s.pts {
			xmin, xmax = math.Min(xmin, pt.x), math.Max(xmax, pt.x)
			ymax = math.Max(ymax, math.Max(pt.y, pt.hi))
		}
	}
	for _, t := range p.xticks {
		xmin, xmax = math.Min(xmin, t), math.Max(xmax, t)
	}
	if math.IsInf(xmin, 0) {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="12" fill="#888">no data</text>`+"\n", ax+aw/2-24, ay+ah/2)
		return
	}
	fx := func(x float64) float64 {
		if xmax == xmin {
			return ax + aw/2
		}
		if p.xlog {
			return ax + aw*(math.Log2(x)-math.Log2(xmin))/(math.Log2(xmax)-math.Log2(xmin))
		}
		return ax + aw*(x-xmin)/(xmax-xmin)
	}
	// Small margins inside the x range so that the end points are not on the frame.
	if p.xlog {
		xmin, xmax = xmin/math.Pow(2, 0.25), xmax*math.Pow(2, 0.25)
	} else {
		pad := (xmax - xmin) * 0.06
		if pad == 0 {
			pad = 1
		}
		xmin, xmax = xmin-pad, xmax+pad
	}
	step, top := niceTicks(ymax)
	fy := func(y float64) float64 { return ay + ah - ah*y/top }

	// Grid, ticks and their labels.
	fmt.Fprintf(b, `<g font-size="10.5" fill="#333">`+"\n")
	for y := 0.0; y <= top+step/2; y += step {
		py := fy(y)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e6e6e6"/>`+"\n", ax, py, ax+aw, py)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", ax-5, py+3.5, tickLabel(y, step))
	}
	for _, t := range p.xticks {
		px := fx(t)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#f0f0f0"/>`+"\n", px, ay, px, ay+ah)
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", px, ay+ah, px, ay+ah+4)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px, ay+ah+16, tickLabel(t, 1))
	}
	b.WriteString("</g>\n")
	fmt.Fprintf(b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", ax, ay, aw, ah)
	fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="11.5" text-anchor="middle">%s</text>`+"\n", ax+aw/2, ay+ah+33, esc(p.xlabel))
	fmt.Fprintf(b, `<text transform="translate(%.1f %.1f) rotate(-90)" font-size="11.5" text-anchor="middle">%s</text>`+"\n", x0+12, ay+ah/2, esc(p.ylabel))

	// The series: whiskers (fastest to slowest run), the line of medians, its points.
	for _, s := range p.series {
		if len(s.pts) == 0 {
			continue
		}
		dash := ""
		if s.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.dash)
		}
		for _, pt := range s.pts {
			if pt.hi > pt.lo {
				px := fx(pt.x)
				fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1" opacity="0.6"/>`+"\n", px, fy(pt.lo), px, fy(pt.hi), s.color)
				for _, y := range []float64{pt.lo, pt.hi} {
					fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="1" opacity="0.6"/>`+"\n", px-3, fy(y), px+3, fy(y), s.color)
				}
			}
		}
		var pts []string
		for _, pt := range s.pts {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", fx(pt.x), fy(pt.y)))
		}
		fmt.Fprintf(b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), s.color, dash)
		for _, pt := range s.pts {
			fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="2.8" fill="%s"/>`+"\n", fx(pt.x), fy(pt.y), s.color)
		}
	}

	// The legend, under the axis title.
	ly := ay + ah + 50
	for i, s := range p.series {
		y := ly + 16*float64(i)
		dash := ""
		if s.dash != "" {
			dash = fmt.Sprintf(` stroke-dasharray="%s"`, s.dash)
		}
		fmt.Fprintf(b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", ax, y, ax+30, y, s.color, dash)
		fmt.Fprintf(b, `<circle cx="%.1f" cy="%.1f" r="2.8" fill="%s"/>`+"\n", ax+15, y, s.color)
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="11">%s</text>`+"\n", ax+38, y+4, esc(s.name))
	}
	if p.note != "" {
		fmt.Fprintf(b, `<text x="%.1f" y="%.1f" font-size="10.5" fill="#555">%s</text>`+"\n", ax, ly+16*float64(len(p.series))+4, esc(p.note))
	}
}

// niceTicks picks a tick step of 1, 2 or 5 times a power of ten giving at most 9 ticks up
// to at least max, and the axis top (a multiple of the step).
func niceTicks(max float64) (step, top float64) {
	if max <= 0 || math.IsNaN(max) {
		return 1, 1
	}
	raw := max / 5
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if step = m * p; max/step <= 8 {
			break
		}
	}
	top = math.Ceil(max/step-1e-9) * step
	if top < max*1.04 { // room above the highest whisker
		top += step
	}
	return step, top
}

// tickLabel writes a tick value with no more decimals than its step needs.
func tickLabel(v, step float64) string {
	switch {
	case step >= 1 || v == 0:
		return fmt.Sprintf("%.0f", v)
	case step >= 0.1:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// writePlot writes the run's plot to path.
func (r *results) writePlot(path string) error {
	m := r.Machine
	mem := m["memory"]
	if kb, err := strconv.ParseFloat(strings.TrimSuffix(mem, " kB"), 64); err == nil {
		mem = fmt.Sprintf("%.0f GiB", kb/(1<<20))
	}
	sub := fmt.Sprintf("%s · %s CPUs, %s · %s · %s · CRIU %s · load average %s at start · medians; whiskers: fastest to slowest run",
		strings.SplitN(m["date"], "T", 2)[0], m["cpus"], mem, m["work_fs"], "runc "+strings.TrimPrefix(m["runc"], "runc version "),
		strings.TrimPrefix(m["criu"], "Version: "), firstField(m["loadavg_start"]))
	return os.WriteFile(path, svg("tardis: stop and restore against bare runc and the disk's own floor", sub, r.panels()), 0o644)
}

func firstField(s string) string {
	if f := strings.Fields(s); len(f) > 0 {
		return f[0]
	}
	return s
}

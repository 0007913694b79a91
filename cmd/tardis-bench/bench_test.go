package main

import (
	"encoding/xml"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNiceTicks(t *testing.T) {
	for _, c := range []struct{ max, step, top float64 }{
		{0.9, 0.2, 1}, {14.2, 2, 16}, {3.0, 0.5, 3.5}, {27, 5, 30}, {0, 1, 1},
	} {
		step, top := niceTicks(c.max)
		if math.Abs(step-c.step) > 1e-9 || math.Abs(top-c.top) > 1e-9 {
			t.Errorf("niceTicks(%g) = %g, %g; want %g, %g", c.max, step, top, c.step, c.top)
		}
	}
}

// The plot is well-formed XML with a line per series, its legend and its labels.
func TestPlot(t *testing.T) {
	s := func(ms float64) *stat { return &stat{Median: ms, Min: ms * 0.9, Max: ms * 1.2, N: 3} }
	r := &results{Machine: map[string]string{"date": "2026-01-01", "loadavg_start": "1.5 1 1"}}
	for i, mib := range []int{64, 256, 1024, 4096} {
		f := float64(i + 1)
		r.Curve = append(r.Curve, &curvePoint{MiB: mib, Bytes: int64(mib) << 20,
			CheckpointTardis: s(300 * f), CheckpointRunc: s(200 * f), CheckpointFsync: s(280 * f), DiskWrite: s(250 * f),
			RestoreTardis: s(250 * f), RestoreRunc: s(230 * f), DiskRead: s(100 * f), DiskWriteGBps: 1.1, DiskReadGBps: 1.6})
	}
	for _, k := range []int{1, 4, 8} {
		f := float64(k)
		r.Drain = append(r.Drain, &drainPoint{K: k, MiB: 256, TardisTotal: s(400 * f), TardisSlow: s(390 * f), RuncFsync: s(350 * f), DiskTotal: s(300 * f)})
	}
	out := svg("title & <more>", "sub", r.panels())
	d := xml.NewDecoder(strings.NewReader(string(out)))
	lines, texts := 0, 0
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v\n%s", err, out)
		}
		if se, ok := tok.(xml.StartElement); ok {
			switch se.Name.Local {
			case "polyline":
				lines++
			case "text":
				texts++
			}
		}
	}
	if lines != 4+3+4 {
		t.Errorf("%d polylines, want 11 (4 stop, 3 restore, 4 drain series)", lines)
	}
	for _, want := range []string{"tardis stop (kill 15)", "bare runc restore -d", "disk: k writers + fsync", "4096", "title &amp; &lt;more&gt;"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("plot lacks %q", want)
		}
	}
}

func TestParseGoBench(t *testing.T) {
	in := `goos: linux
pkg: github.com/tardis-runtime/tardis/internal/rootfs
BenchmarkSaveApply/small/save-2   	       4	 284342692 ns/op	 324.66 MB/s	       228.6 tar-ms	       284.3 tardis-ms	         1.244 tardis/tar	13930324 B/op	  102076 allocs/op
PASS
pkg: github.com/tardis-runtime/tardis/internal/store
BenchmarkDigests/1x256MiB-2         	       4	 323548565 ns/op	 829.66 MB/s	      1437 MB/cpu-s
`
	got, err := parseGoBench(strings.NewReader(in))
	if err != nil || len(got) != 2 {
		t.Fatalf("parseGoBench = %v, %v", got, err)
	}
	if g := got[0]; g.Name != "BenchmarkSaveApply/small/save" || g.Iterations != 4 || g.Metrics["tardis/tar"] != 1.244 || !strings.HasSuffix(g.Package, "rootfs") {
		t.Errorf("first = %+v", g)
	}
	if g := got[1]; g.Metrics["MB/s"] != 829.66 || g.Metrics["MB/cpu-s"] != 1437 {
		t.Errorf("second = %+v", g)
	}
}

func TestCallArgs(t *testing.T) {
	got := callArgs("--root /x/runc/k8s.io --log /x/log.json --log-format json --systemd-cgroup kill --all abc 9")
	if got != "kill --all abc 9" {
		t.Errorf("callArgs = %q", got)
	}
}

// The recorder's log is read on from where the last read ended; lines that are not calls
// are skipped, and a log not yet written has no calls.
func TestReadCalls(t *testing.T) {
	p := filepath.Join(t.TempDir(), "calls.log")
	if calls, off := readCalls(p, 7); calls != nil || off != 7 {
		t.Errorf("missing log: %v, %d", calls, off)
	}
	first := "1000 42 --root /r state c1\n"
	if err := os.WriteFile(p, []byte(first+"garbage\n2000 43 kill c1 9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	calls, off := readCalls(p, 0)
	if len(calls) != 2 || calls[0].pid != 42 || calls[0].args != "--root /r state c1" || calls[1].at.UnixNano() != 2000 {
		t.Errorf("calls = %+v", calls)
	}
	if st, _ := os.Stat(p); off != st.Size() {
		t.Errorf("offset %d, file %d bytes", off, st.Size())
	}
	if calls, off2 := readCalls(p, int64(len(first))); len(calls) != 1 || calls[0].pid != 43 || off2 != off {
		t.Errorf("from %d: %+v, %d", len(first), calls, off2)
	}
}

// A comparison against the slowest of several variants takes the slowest median.
func TestCompareSlowest(t *testing.T) {
	r := &results{}
	g := r.group("checkpoint", "", "runc")
	g.compareSlowest("tardis", []string{"runc", "disk"}, 1.15).named("stop")
	for _, x := range []float64{100, 110, 120} {
		g.v("tardis").Samples = append(g.v("tardis").Samples, x)
		g.v("runc").Samples = append(g.v("runc").Samples, x*0.5)
		g.v("disk").Samples = append(g.v("disk").Samples, x*0.8)
	}
	r.finish()
	c := g.Comparisons[0]
	if math.Abs(c.Ratio-1.25) > 1e-9 || c.Met == nil || *c.Met || !strings.HasPrefix(c.Reference, "disk") {
		t.Errorf("comparison = %+v", c)
	}
	if len(r.Goals) != 1 || r.Goals[0].Met || r.Goals[0].Name != "stop" {
		t.Errorf("goals = %+v", r.Goals)
	}
}

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// goBench is one line of `go test -bench` output: a benchmark, its iterations and its
// metrics by unit (ns/op, MB/s, B/op, and the custom ones such as tardis-ms and tar-ms).
type goBench struct {
	Package    string             `json:"package"`
	Name       string             `json:"name"`
	Iterations int64              `json:"iterations"`
	Metrics    map[string]float64 `json:"metrics"`
}

// parseGoBench reads `go test -bench` output. A result line's package is the one the
// "pkg:" line before it names.
func parseGoBench(r io.Reader) ([]*goBench, error) {
	var out []*goBench
	pkg := ""
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		iters, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 { // the GOMAXPROCS suffix
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		gb := &goBench{Package: pkg, Name: name, Iterations: iters, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			gb.Metrics[f[i+1]] = v
		}
		out = append(out, gb)
	}
	return out, sc.Err()
}

// ingestGoBench reads the Go benchmarks' output of the same `make bench` and turns those
// with goals into goals: tardis's archive against GNU tar on the small-file trees (at
// most 1x: at least as fast), and the checkpoint digests (at least 1 GB/s).
func (r *results) ingestGoBench(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	benches, err := parseGoBench(f)
	if err != nil {
		return err
	}
	r.GoBench = benches
	for _, gb := range benches {
		name := strings.TrimPrefix(gb.Name, "Benchmark")
		if ratio, ok := gb.Metrics["tardis/tar"]; ok {
			tree, op, _ := strings.Cut(strings.TrimPrefix(name, "SaveApply/"), "/")
			if tree == "small" || tree == "mixed" {
				r.addGoal(fmt.Sprintf("small files: %s of the %q tree <= 1x GNU tar", op, tree), ratio, "x", "<=", 1.0,
					fmt.Sprintf("go test %s: tardis %.1f ms vs tar %.1f ms (mean of %d alternated runs, tmpfs)", gb.Name, gb.Metrics["tardis-ms"], gb.Metrics["tar-ms"], gb.Iterations))
			}
		}
		if strings.HasPrefix(name, "Digests") {
			if mbs, ok := gb.Metrics["MB/s"]; ok {
				r.addGoal(fmt.Sprintf("digests (%s) >= 1 GB/s", strings.TrimPrefix(name, "Digests/")), mbs/1000, "GB/s", ">=", 1.0,
					fmt.Sprintf("go test %s: store's digests over files in the page cache, every core", gb.Name))
			}
		}
	}
	return nil
}

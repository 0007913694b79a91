package fakerunc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tardis-runtime/tardis/internal/criuimg"
	"github.com/tardis-runtime/tardis/internal/criuimg/criuimgtest"
)

// criuLog is a CRIU-style log in the work dir: "(SS.UUUUUU) text" lines.
type criuLog struct {
	name  string
	start time.Time
}

func newCriuLog(name string) (*criuLog, error) {
	if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
		return nil, err
	}
	return &criuLog{name, time.Now()}, os.WriteFile(name, nil, 0o600)
}

func (l *criuLog) printf(format string, a ...any) {
	f, err := os.OpenFile(l.name, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return
	}
	defer f.Close()
	d := time.Since(l.start)
	fmt.Fprintf(f, "(%02d.%06d) %s\n", int(d.Seconds()), d.Microseconds()%1e6, fmt.Sprintf(format, a...))
}

// criuPaths returns the image and work paths: --image-path (default <cwd>/checkpoint)
// and --work-path (default the image path), relative ones resolved against dir.
func (r *fakerunc) criuPaths(dir string) (image, work string, err error) {
	image, ok := r.inv.Value("image-path")
	if !ok || image == "" {
		cwd, err := os.Getwd()
		if err != nil {
			return "", "", err
		}
		image = filepath.Join(cwd, "checkpoint")
	}
	work, ok = r.inv.Value("work-path")
	if !ok || work == "" {
		work = image
	}
	abs := func(p string) string {
		if filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(dir, p)
	}
	return abs(image), abs(work), nil
}

// logOptions writes the container and every option given into a CRIU log, so scenarios
// can check what the fake was asked to do.
func (r *fakerunc) logOptions(l *criuLog, c *container) {
	l.printf("fakerunc: %s of %s: pid %d bundle %s rootfs %s", r.inv.Command, c.ID, c.Pid,
		c.Bundle, c.Rootfs)
	for _, o := range r.inv.Options {
		l.printf("fakerunc: option %s=%s", o.Name, o.Value)
	}
}

// checkpoint writes a fake CRIU image of a running or paused container, then destroys it
// unless --leave-running (or --pre-dump).
func (r *fakerunc) checkpoint() error {
	c, err := r.locked()
	if err != nil {
		return err
	}
	if c.Status != running && c.Status != paused {
		return fmt.Errorf("Container cannot be checkpointed in %s state", c.Status)
	}
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	image, work, err := r.criuPaths(cwd)
	if err != nil {
		return err
	}
	log, err := newCriuLog(filepath.Join(work, "dump.log"))
	if err != nil {
		return err
	}
	r.logOptions(log, c)
	err = criuimgtest.WriteFake(image, criuimgtest.FakeProcess{Pid: uint32(c.Pid), Threads: 1, Pages: 4, Comm: "sh"})
	if err == nil && r.fault.action == "damage" {
		err = criuimgtest.Damage(image, r.fault.kind)
	}
	if err != nil {
		log.printf("Error (fakerunc): %v", err)
		return fmt.Errorf("criu failed: type DUMP errno 0\nlog file: %s", log.name)
	}
	r.dieIf() // the image is there, the log has no success line, the container lives
	log.printf("Dumping finished successfully")
	if r.inv.Bool("leave-running") || r.inv.Bool("pre-dump") {
		return nil
	}
	return r.destroy(c)
}

// restore creates a running container from an image, after the checks runc and CRIU make.
func (r *fakerunc) restore() error {
	if err := r.lock(); err != nil {
		return err
	}
	cwd, err := os.Getwd()
	if err != nil {
		return err
	}
	imageArg, ok := r.inv.Value("image-path")
	if !ok || imageArg == "" {
		imageArg = filepath.Join(cwd, "checkpoint") // the default is taken before runc's chdir
	}
	c, err := r.newContainer(r.bundleArg())
	if err != nil {
		return err
	}
	image, work, err := r.criuPaths(c.Bundle) // runc reads the image after its chdir
	if err != nil {
		return err
	}
	if _, err := os.ReadFile(filepath.Join(image, "descriptors.json")); err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			pe.Path = filepath.Join(imageArg, "descriptors.json")
		}
		return err
	}
	log, err := newCriuLog(filepath.Join(work, "restore.log"))
	if err != nil {
		return err
	}
	r.logOptions(log, c)
	if err := criuimg.Validate(image); err != nil {
		log.printf("Error (fakerunc): %s", strings.ReplaceAll(err.Error(), "\n", " "))
		return fmt.Errorf("criu failed: type NOTIFY errno 0\nlog file: %s", log.name)
	}
	c.RestoredFrom = image
	if wantsReal() && r.inv.Bool("detach") {
		if err := r.startReal(c, c.env, image); err != nil {
			log.printf("Error (fakerunc): %v", err)
			return fmt.Errorf("criu failed: type RESTORE errno 0\nlog file: %s", log.name)
		}
	}
	if err := r.save(c); err != nil {
		return err
	}
	r.dieIf() // half restored: the container exists, in status created
	c.Status = running
	if !r.inv.Bool("detach") {
		c.Status = stopped // the restored process "exits 0" at once
	}
	if err := r.save(c); err != nil {
		return err
	}
	if err := r.writePidFile(c.Pid); err != nil {
		return err
	}
	log.printf("Restore finished successfully")
	if s := os.Getenv("FAKERUNC_RESTORE_STDOUT"); s != "" {
		fmt.Println(s)
	}
	return nil
}

package fakecuda

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
)

// deviceSuffixes follow $FAKECUDA_DEV as the real nodes follow /dev/nvidia.
var deviceSuffixes = []string{"0", "ctl", "-uvm", "-uvm-tools"}

const page = 4096

// ProcessMain is a fake CUDA process: it opens (or with -map, maps) the fake device files,
// maps $FAKECUDA_LIB as the driver's library, records itself in $FAKECUDA_DIR as a running
// CUDA process holding -mib MiB (unless -nocuda: a process that holds the GPU without CUDA
// state), starts -spawn more such processes as its children (a program of several CUDA
// processes), prints "ready" once they are, and waits. SIGUSR1 makes it let go of its
// devices, SIGUSR2 take them again (the fake cuda-checkpoint's checkpoint and restore);
// SIGTERM ends it (and its children).
//
// With FAKERUNC_RESTORED set (the fake runc's restore sets it), it stands for a process
// CRIU brought back from a checkpoint taken while its CUDA state was suspended: it maps the
// driver's library but takes no device, and records itself as checkpointed, holding -mib
// MiB once resumed (cuda-checkpoint --action restore, then unlock).
func ProcessMain() int {
	fl := flag.NewFlagSet("cudaproc", flag.ContinueOnError)
	mib := fl.Uint64("mib", 1024, "MiB held on the GPU")
	mapOnly := fl.Bool("map", false, "map the devices and close them, rather than hold them open")
	noCUDA := fl.Bool("nocuda", false, "hold the devices without CUDA state")
	spawn := fl.Int("spawn", 0, "start this many more CUDA processes, as children")
	if err := fl.Parse(os.Args[1:]); err != nil {
		return 2
	}
	prefix := os.Getenv("FAKECUDA_DEV")
	if prefix == "" || (!*noCUDA && dir() == "") {
		fmt.Fprintln(os.Stderr, "cudaproc: set FAKECUDA_DEV (and FAKECUDA_DIR)")
		return 2
	}
	restored := os.Getenv("FAKERUNC_RESTORED") != ""
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTERM, syscall.SIGINT)

	d := &devices{prefix: prefix, mapOnly: *mapOnly}
	if !restored {
		if err := d.take(); err != nil {
			fmt.Fprintf(os.Stderr, "cudaproc: %v\n", err)
			return 1
		}
	}
	if lib := os.Getenv("FAKECUDA_LIB"); lib != "" {
		if _, err := mapFile(lib, syscall.MAP_PRIVATE); err != nil {
			fmt.Fprintf(os.Stderr, "cudaproc: %v\n", err)
			return 1
		}
	}
	pid := os.Getpid()
	if !*noCUDA {
		state, devs := running, "open"
		if restored {
			state, devs = checkpointed, "closed"
		}
		if err := save(pid, &pstate{State: state, MiB: *mib, Start: startTime(pid)}); err != nil {
			fmt.Fprintf(os.Stderr, "cudaproc: %v\n", err)
			return 1
		}
		defer os.Remove(statePath(pid))
		defer os.Remove(ackPath(pid))
		if err := writeAtomic(ackPath(pid), []byte(devs)); err != nil {
			fmt.Fprintf(os.Stderr, "cudaproc: %v\n", err)
			return 1
		}
	}
	children, err := startChildren(*spawn, *mib, *mapOnly, *noCUDA)
	defer func() {
		for _, c := range children {
			_ = c.Process.Signal(syscall.SIGTERM)
			_ = c.Wait()
		}
	}()
	if err != nil {
		fmt.Fprintf(os.Stderr, "cudaproc: %v\n", err)
		return 1
	}
	fmt.Println("ready")
	for s := range sigs {
		var err error
		switch s {
		case syscall.SIGUSR1:
			if err = d.release(); err == nil {
				err = writeAtomic(ackPath(pid), []byte("closed"))
			}
		case syscall.SIGUSR2:
			if err = d.take(); err == nil {
				err = writeAtomic(ackPath(pid), []byte("open"))
			}
		default:
			return 0
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "cudaproc: %v\n", err)
			return 1
		}
	}
	return 0
}

// startChildren starts n fake CUDA processes like this one and waits for each to be ready.
func startChildren(n int, mib uint64, mapOnly, noCUDA bool) ([]*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var cmds []*exec.Cmd
	for i := 0; i < n; i++ {
		cmd := exec.Command(self, "-mib", strconv.FormatUint(mib, 10))
		cmd.Args[0] = "cudaproc"
		if mapOnly {
			cmd.Args = append(cmd.Args, "-map")
		}
		if noCUDA {
			cmd.Args = append(cmd.Args, "-nocuda")
		}
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			return cmds, err
		}
		if err := cmd.Start(); err != nil {
			return cmds, err
		}
		cmds = append(cmds, cmd)
		if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
			return cmds, fmt.Errorf("child %d: %q, %v", cmd.Process.Pid, line, err)
		}
	}
	return cmds, nil
}

// devices are the fake device files a process holds: open files, or mappings.
type devices struct {
	prefix  string
	mapOnly bool
	files   []*os.File
	maps    [][]byte
}

func (d *devices) take() error {
	for _, s := range deviceSuffixes {
		if d.mapOnly {
			m, err := mapFile(d.prefix+s, syscall.MAP_SHARED)
			if err != nil {
				return err
			}
			d.maps = append(d.maps, m)
			continue
		}
		f, err := openDevice(d.prefix + s)
		if err != nil {
			return err
		}
		d.files = append(d.files, f)
	}
	return nil
}

func (d *devices) release() error {
	for _, f := range d.files {
		if err := f.Close(); err != nil {
			return err
		}
	}
	for _, m := range d.maps {
		if err := syscall.Munmap(m); err != nil {
			return err
		}
	}
	d.files, d.maps = nil, nil
	return nil
}

// openDevice opens a fake device file, made a page long so that it can be mapped.
func openDevice(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o666)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err == nil && st.Size() < page {
		err = f.Truncate(page)
		if err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// mapFile maps a page of the file and closes it: the mapping alone stays.
func mapFile(path string, flags int) ([]byte, error) {
	f, err := openDevice(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, page, syscall.PROT_READ, flags)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", path, err)
	}
	return m, nil
}

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// pythonReady is the time to ready of a real application: CPython (the host's, from the
// standard library only) importing most of its standard library, then building an
// in-memory table of -python-rows rows, indexing and sorting it, loading it into an
// in-memory SQLite database and compiling patterns, before it prints "ready"; then a tick
// every 5 ms. Fresh start against restore, as timeToReady.
//
// The container's rootfs is the busybox one; the host's /usr is bind-mounted read-only
// at /usr (python3, its standard library and the C libraries it loads: Debian's merged
// /usr, with /lib and /lib64 links in the rootfs), and the script is a file of the
// rootfs. runc hands bind mounts to CRIU as external mounts, so the checkpoint holds none
// of /usr.
func (b *bench) pythonReady(res *results, o options) error {
	const key = "bench-python"
	if _, err := os.Stat(o.python); err != nil {
		res.group("time to ready (python)", "skipped", "").Notes = []string{fmt.Sprintf("skipped: %v", err)}
		return nil
	}
	python := o.python
	if real, err := filepath.EvalSymlinks(python); err == nil {
		python = real
	}
	if !strings.HasPrefix(python, "/usr/") {
		return fmt.Errorf("python %s is not under /usr (the container gets the host's /usr only)", python)
	}
	if _, err := os.Stat(python); err != nil {
		return fmt.Errorf("python: %w", err)
	}
	bundle := b.path("bundles", "python")
	if err := b.makeBundle(bundle, optedIn(key), false, python, "-B", "/app/warm.py", fmt.Sprint(o.pythonRows)); err != nil {
		return err
	}
	rootfs := filepath.Join(bundle, "rootfs")
	for link, target := range map[string]string{"lib": "usr/lib", "lib64": "usr/lib64"} {
		if err := os.Symlink(target, filepath.Join(rootfs, link)); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(filepath.Join(rootfs, "usr"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(rootfs, "app"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(rootfs, "app", "warm.py"), []byte(warmPy), 0o644); err != nil {
		return err
	}
	err := editSpec(bundle, func(spec map[string]any) {
		spec["mounts"] = append(spec["mounts"].([]any), map[string]any{
			"destination": "/usr", "type": "bind", "source": "/usr", "options": []string{"bind", "ro", "nosuid", "nodev"},
		})
		proc := spec["process"].(map[string]any)
		proc["env"] = []string{"PATH=/usr/bin:/bin", "HOME=/root", "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"}
	})
	if err != nil {
		return err
	}
	out, _ := b.output(python, "--version")
	g := res.group("time to ready (python)", fmt.Sprintf("%s importing most of its standard library, then building, indexing and sorting a %d-row table, an in-memory SQLite copy, compiled patterns: from `tardis create` to ready (fresh: its \"ready\" line; restored: its first \"tick\" line)", strings.TrimSpace(out), o.pythonRows), "fresh start")
	g.compare("restore", "fresh start", 0)
	g.Extra["python"] = python + " (host /usr bind-mounted read-only into a busybox rootfs)"
	return b.readyRounds(g, o, bundle, key, "py")
}

// warmPy is the application of pythonReady. Its timings go to stderr (the run's
// container-stderr.log).
const warmPy = `# A service's warm-up: most of the standard library imported, a table built in memory and
# indexed, an in-memory SQLite database loaded, templates compiled. Then "ready", then a
# "tick" every 5 ms.
import sys, time
t0 = time.monotonic()
MODULES = """abc argparse array ast asyncio base64 binascii bisect bz2 calendar cmath cmd code
codecs collections collections.abc colorsys compileall concurrent.futures configparser
contextlib contextvars copy copyreg cProfile csv ctypes dataclasses datetime dbm decimal
difflib dis doctest email email.mime.multipart email.mime.text email.parser email.policy
enum filecmp fileinput fnmatch fractions ftplib functools gc getopt gettext glob graphlib
gzip hashlib heapq hmac html html.parser http.client http.cookiejar http.cookies http.server
imaplib importlib importlib.metadata inspect io ipaddress itertools json json.decoder
keyword linecache locale logging logging.config logging.handlers lzma mailbox mimetypes
multiprocessing multiprocessing.pool netrc numbers operator optparse os pathlib pdb pickle
pickletools pkgutil platform plistlib poplib pprint profile pstats queue quopri random re
reprlib runpy sched secrets selectors shelve shlex shutil signal smtplib socket
socketserver sqlite3 ssl stat statistics string stringprep struct subprocess symtable
sysconfig tabnanny tarfile tempfile textwrap threading timeit token tokenize trace
traceback tracemalloc types typing unicodedata unittest unittest.mock urllib.parse
urllib.request uuid warnings wave weakref wsgiref.simple_server xml.dom.minidom
xml.etree.ElementTree xml.sax xmlrpc.client xmlrpc.server zipapp zipfile zlib zoneinfo""".split()
loaded = 0
for m in MODULES:
    try:
        __import__(m)
        loaded += 1
    except ImportError:
        pass
t1 = time.monotonic()
import random, sqlite3, re, json, string
rng = random.Random(7)
N = int(sys.argv[1]) if len(sys.argv) > 1 else 400000
table = {}
for i in range(N):
    table[i] = {"id": i, "name": "user-%07d" % i, "group": "g%03d" % (i % 997),
                "score": rng.random(), "tags": [rng.choice(string.ascii_lowercase) for _ in range(3)]}
by_group = {}
for row in table.values():
    by_group.setdefault(row["group"], []).append(row["id"])
ranked = sorted(table.values(), key=lambda r: r["score"])
db = sqlite3.connect(":memory:")
db.execute("create table t (id integer primary key, name text, grp text, score real)")
db.executemany("insert into t values (?, ?, ?, ?)", ((r["id"], r["name"], r["group"], r["score"]) for r in ranked))
db.execute("create index t_grp on t (grp, score)")
pats = [re.compile(r"^user-(\d{3})%d(\d+)$" % k) for k in range(200)]
blob = json.dumps(ranked[:20000])
t2 = time.monotonic()
rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]
print("imports %d modules %.2fs, table %d rows %.2fs, rss %s kB" % (loaded, t1 - t0, N, t2 - t1, rss), file=sys.stderr, flush=True)
print("ready", flush=True)
try:
    while True:
        time.sleep(0.005)
        print("tick", flush=True)
except BrokenPipeError:
    pass
`

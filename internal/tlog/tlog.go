// Package tlog writes tardis's events: every event to tardis's own log (JSON lines with the
// container id, key, operation and error), and warnings and errors also to the caller's
// --log in the caller's --log-format, the way runc writes it, so that containerd and Docker
// show them. Nothing goes to stdout. The own log is opened only when there is something to
// say, so a pass-through costs nothing here.
package tlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

// Logger carries the context of one tardis invocation.
type Logger struct {
	OwnPath      string    // tardis's own log file
	CallerPath   string    // the caller's --log, or ""
	CallerFormat string    // the caller's --log-format: "json" or "text"
	Fallback     io.Writer // where an event goes when the own log cannot be opened (stderr)
	Now          func() time.Time

	Op, ID, Key string
}

// Info records an event in the own log only.
func (l *Logger) Info(msg string, attrs ...any) { l.event("info", msg, nil, attrs) }

// Warn records a warning (with its specific error) in the own log and the caller's log.
func (l *Logger) Warn(msg string, err error, attrs ...any) { l.event("warning", msg, err, attrs) }

// Error records an error in both logs.
func (l *Logger) Error(msg string, err error, attrs ...any) { l.event("error", msg, err, attrs) }

func (l *Logger) event(level, msg string, err error, attrs []any) {
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	t := now().UTC()
	rec := []field{{"time", t.Format(time.RFC3339Nano)}, {"level", level}, {"msg", msg}}
	for _, f := range []field{{"op", l.Op}, {"id", l.ID}, {"key", l.Key}} {
		if f.v != "" {
			rec = append(rec, f)
		}
	}
	if err != nil {
		rec = append(rec, field{"error", err.Error()})
	}
	for i := 0; i+1 < len(attrs); i += 2 {
		rec = append(rec, field{fmt.Sprint(attrs[i]), attrs[i+1]})
	}
	line := encode(rec)
	if werr := appendLine(l.OwnPath, line); werr != nil && l.Fallback != nil {
		fmt.Fprintf(l.Fallback, "tardis: %s (own log unavailable: %v)\n", line, werr)
	}
	if level == "info" || l.CallerPath == "" {
		return
	}
	text := "tardis: " + msg
	if err != nil {
		text += ": " + err.Error()
	}
	_ = appendLine(l.CallerPath, callerLine(l.CallerFormat, level, text, t))
}

type field struct {
	k string
	v any
}

// encode writes one JSON object with the fields in order (time, level, msg first), so
// that a person reading the log finds them where they expect.
func encode(fields []field) []byte {
	b := []byte{'{'}
	for i, f := range fields {
		if i > 0 {
			b = append(b, ',')
		}
		k, _ := marshal(f.k)
		v, err := marshal(f.v)
		if err != nil {
			v, _ = marshal(fmt.Sprint(f.v))
		}
		b = append(append(append(b, k...), ':'), v...)
	}
	return append(b, '}')
}

// marshal is json.Marshal without HTML escaping: a log is read by people and tools, not
// put in a web page, and "->" reads better than "-\u003e".
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// callerLine formats like runc's logrus: JSON with level, msg, time; or logrus text.
func callerLine(format, level, msg string, t time.Time) []byte {
	ts := t.Format(time.RFC3339)
	if format == "json" {
		b, _ := json.Marshal(struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
			Time  string `json:"time"`
		}{level, msg, ts})
		return b
	}
	return []byte(fmt.Sprintf("time=%q level=%s msg=%s", ts, level, logfmtQuote(msg)))
}

func logfmtQuote(s string) string {
	if s != "" && !strings.ContainsAny(s, " =\"\\\n\t") {
		return s
	}
	return strconv.Quote(s)
}

func appendLine(path string, line []byte) error {
	if path == "" {
		return fmt.Errorf("no log file")
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(append(line, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

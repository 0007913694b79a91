package fakerunc

import (
	"os"
	"strings"
)

// logCall appends argv (without argv[0]) as one shell-quoted line to $FAKERUNC_CALLS.
// One write on an O_APPEND file keeps lines whole when calls run in parallel.
func logCall(args []string) {
	name := os.Getenv("FAKERUNC_CALLS")
	if name == "" {
		return
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	words := make([]string, len(args))
	for i, a := range args {
		words[i] = shellQuote(a)
	}
	f.WriteString(strings.Join(words, " ") + "\n")
}

// shellQuote leaves plain words as they are and single-quotes the others.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

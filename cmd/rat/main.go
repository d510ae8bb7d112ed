// Command rat is the operator CLI: baselines, runtime policies (create,
// sign, verify, check, diff), OTA policies and device status.
//
// Each subcommand lives in its own file and registers itself in init with
// register, so that work on one subcommand never touches another's file.
package main

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one subcommand (possibly with its own nested verbs, which
// the command parses itself from args).
type command struct {
	name    string
	summary string
	run     func(args []string) int // exit code: 0 ok, 1 verdict negative, 2 usage/error
}

var commands = map[string]command{}

func register(c command) {
	if _, dup := commands[c.name]; dup {
		panic("rat: duplicate command " + c.name)
	}
	commands[c.name] = c
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: rat <command> [args]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-16s %s\n", n, commands[n].summary)
	}
}

func main() {
	os.Exit(run(os.Args[1:]))
}

// isHelp reports whether arg asks for usage.
func isHelp(arg string) bool { return arg == "-h" || arg == "--help" || arg == "help" }

// verb is one verb of a command with verbs (rat policy create, ...): it
// parses its own flags from args.
type verb func(args []string, stdout, stderr io.Writer) int

// dispatch runs the verb args[0] of the command name: usage on stderr for
// help (exit 0), for no verb or for an unknown one (exit 2).
func dispatch(name, usage string, args []string, verbs map[string]verb) int {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprintln(os.Stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	v, ok := verbs[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "%s: unknown verb %q\n%s\n", name, args[0], usage)
		return 2
	}
	return v(args[1:], os.Stdout, os.Stderr)
}

func run(args []string) int {
	if len(args) == 0 || isHelp(args[0]) {
		usage()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "rat: unknown command %q\n", strings.TrimSpace(args[0]))
		usage()
		return 2
	}
	return c.run(args[1:])
}

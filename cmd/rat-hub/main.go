// Command rat-hub is Ratatouille's verifier hub.
//
//	rat-hub serve [flags]     run the hub (embedded MQTT broker, bbolt, HTTP API)
//	rat-hub version
//
// Each subcommand lives in its own file and registers itself.
package main

import (
	"fmt"
	"os"
	"sort"
)

var version = "dev"

type command struct {
	name, summary string
	run           func(args []string) int
}

var commands = map[string]command{}

func register(c command) { commands[c.name] = c }

func init() {
	register(command{name: "version", summary: "print the version", run: func([]string) int { fmt.Println("rat-hub", version); return 0 }})
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: rat-hub <command> [flags]")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, commands[n].summary)
	}
}

func main() {
	if len(os.Args) < 2 {
		usage()
		os.Exit(2)
	}
	c, ok := commands[os.Args[1]]
	if !ok {
		usage()
		os.Exit(2)
	}
	os.Exit(c.run(os.Args[2:]))
}

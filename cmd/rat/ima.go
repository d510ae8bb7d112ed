package main

import (
	"crypto"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/ratatouille/rat/evidence/ima"
)

func init() {
	register(command{name: "ima", summary: "IMA measurement lists: replay", run: func(args []string) int {
		return runIMA(args, os.Stdout, os.Stderr)
	}})
}

func runIMA(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] != "replay" {
		fmt.Fprintln(stderr, "usage: rat ima replay [--bank sha1|sha256|sha384|sha512] LOG")
		return 2
	}
	fs := flag.NewFlagSet("rat ima replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bankName := fs.String("bank", "sha256", "PCR bank to replay into")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "rat ima replay: want exactly one log file (ascii or binary)")
		return 2
	}
	bank, ok := map[string]crypto.Hash{"sha1": crypto.SHA1, "sha256": crypto.SHA256, "sha384": crypto.SHA384, "sha512": crypto.SHA512}[*bankName]
	if !ok {
		fmt.Fprintf(stderr, "rat ima replay: unknown bank %q\n", *bankName)
		return 2
	}
	f, err := os.Open(fs.Arg(0))
	if err != nil {
		fmt.Fprintln(stderr, "rat ima replay:", err)
		return 2
	}
	defer f.Close()
	entries, err := ima.Parse(f)
	if err != nil {
		fmt.Fprintln(stderr, "rat ima replay:", err)
		return 2
	}
	v, err := ima.Replay(entries, bank, nil)
	if err != nil {
		fmt.Fprintln(stderr, "rat ima replay:", err)
		return 2
	}
	fmt.Fprintf(stdout, "PCR-10 %s: %s (%d entries)\n", *bankName, hex.EncodeToString(v), len(entries))
	return 0
}

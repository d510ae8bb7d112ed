package main

import (
	"fmt"
	"runtime/debug"
)

func init() {
	register(command{name: "version", summary: "print the build version", run: func([]string) int {
		v := "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			v = bi.Main.Version
		}
		fmt.Println("rat", v)
		return 0
	}})
}

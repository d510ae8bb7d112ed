//go:build !(linux && (amd64 || arm64))

package store

import "testing"

func evict(tb testing.TB, _ string) { tb.Skip("page cache eviction needs linux/amd64 or arm64") }

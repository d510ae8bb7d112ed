package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ratatouille/rat/hub/server"
)

// OTA releases (docs/ota.md): --release-window bounds the union of N and
// N+1 after an update without reboot; --gate-token-file gives OTA servers
// a token that opens only GET /v1/groups/{g}/releases/{v};
// --release-wait-stale makes STALE devices hold back the hub's automatic
// rolling-out → complete.
var (
	releaseWindow    *time.Duration
	gateTokenFile    *string
	releaseWaitStale *bool
)

func init() {
	serveFlags = append(serveFlags, func(fs *flag.FlagSet) {
		releaseWindow = fs.Duration("release-window", 24*time.Hour, "judge a device updated without reboot by the union of its old and new release's policies for this long")
		releaseWaitStale = fs.Bool("release-wait-stale", false, "a release is complete only when STALE devices too have reported it (default: when every device that attests does)")
		gateTokenFile = fs.String("gate-token-file", "", "file holding a token (>= 16 chars) OTA servers use for the release gate GET /v1/groups/{g}/releases/{v} (the operator token works too)")
	})
	configHooks = append(configHooks, func(cfg *server.Config) error {
		if *releaseWindow <= 0 {
			return fmt.Errorf("--release-window must be positive")
		}
		cfg.ReleaseWindow = *releaseWindow
		cfg.ReleaseWaitStale = *releaseWaitStale
		return nil
	})
	serveHooks = append(serveHooks, func(_ context.Context, h *hubRuntime) error {
		if *gateTokenFile == "" {
			return nil
		}
		b, err := os.ReadFile(*gateTokenFile)
		if err != nil {
			return fmt.Errorf("--gate-token-file: %w", err)
		}
		if err := h.API.SetGateToken(strings.TrimSpace(string(b))); err != nil {
			return fmt.Errorf("--gate-token-file: %w", err)
		}
		return nil
	})
}

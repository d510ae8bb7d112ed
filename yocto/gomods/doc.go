// Package gomods turns a Go module's go.sum into the two include files a
// Yocto go-mod recipe needs: <recipe>-go-mods.inc with one
// gomod://<module>;version=<v>;sha256sum=<sha256 of the module zip> SRC_URI
// line per module (mod=1 and the go.mod file's sha256 for modules whose
// go.mod alone is needed), and <recipe>-licenses.inc with LICENSE and
// LIC_FILES_CHKSUM for the modules linked into the program.
//
// Why generated from go.sum: the recipe builds offline (GOPROXY=off), so the
// SRC_URI must list exactly what the go command will look for, and bitbake
// checks each file by sha256 while go.sum pins h1 hashes. Generate checks
// every zip and go.mod file against its go.sum h1 hash before it writes the
// file's sha256, so a tampered or stale module cache cannot slip a different
// module into a recipe.
//
// It runs the go command (go mod download, go list) and reads the module
// cache; it must not import project packages (hub, ota, device, evidence).
package gomods

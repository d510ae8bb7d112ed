// Package vendortar writes a reproducible source tarball of the repository
// at one commit with the device module's dependencies vendored
// (device/vendor/, from go mod vendor), for Yocto releases whose bitbake has
// no gomod:// fetcher (scarthgap): such a recipe can fetch one archive by
// sha256 and build with -mod=vendor and no network.
//
// Reproducible means the same commit gives the same bytes: the tree comes
// from git archive (not the working tree), entries are sorted, owners are
// 0, modes are 0644 or 0755, every mtime is the commit's time, and the gzip
// header carries no name or time. It runs git and the go command; it must
// not import project packages.
package vendortar

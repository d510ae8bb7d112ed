// Package testimage builds real release images for the ota tests: a
// small root file system made of ELF binaries copied from the host, and
// squashfs, ext4 (1 KiB blocks, with a holed file), tar and bundle images
// of it made by the real tools (mksquashfs, mke2fs -d, tar, cpio). The
// expected digests come from the sha256sum command, not from Go.
//
// It is test support only: nothing outside ota tests imports it, and it
// must not import the packages it tests.
package testimage

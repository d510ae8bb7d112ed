// Package rootfs reads a release's root file system without root
// privileges and without mounting it: from a directory, a tar archive
// (plain, gzip, xz or zstd), a squashfs image or an ext4 image, all through
// one Reader that walks entries (path, mode, symlink target, content).
//
// It owns image access and in-image path resolution (Index.Resolve follows
// symlinks chroot-style, so keys match the paths IMA records). It does not
// decide what IMA measures (ota/predict does) and does not know release
// bundle formats (ota/release does). It must not import hub, network or
// storage packages.
package rootfs

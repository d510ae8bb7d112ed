// Package predict builds a Keylime runtime policy from a release's root
// file system without booting it: it decides which files the kernel's IMA
// policy will measure (ima_policy=tcb: every regular file root may read;
// the exec policy: ELF executables and shared objects, kernel modules,
// firmware and executable scripts), hashes them as stored with the
// kernel's hash algorithm, and keys them by the path IMA will print.
//
// It owns the measured-file rules. It reads images only through
// ota/rootfs and writes policies only through evidence/runtimepolicy; it
// must not import hub, network or storage packages.
package predict

// Package yocto holds the static checks of the meta-ratatouille Yocto layer
// (yocto/meta-ratatouille): layer.conf, the recipes' required variables, the
// generated Go module includes against device/go.sum, the systemd unit
// (systemd-analyze verify) and the IMA policy (yocto/imapolicy). CI has no
// bitbake, so these tests are what keeps the layer honest between real
// builds.
//
// The package has no code of its own; its subpackages are gomods (go.sum to
// gomod:// SRC_URI lines and licenses) and imapolicy (the kernel's IMA
// policy grammar). It must not import hub, ota or device code: the layer is
// checked as text, the way bitbake sees it.
package yocto

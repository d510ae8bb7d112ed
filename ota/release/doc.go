// Package release reads the metadata of OTA release artifacts — RAUC
// bundles, SWUpdate .swu files, Mender v3 artifacts, and plain root file
// system images — and extracts the root file system image inside them,
// checking it against the digest the artifact's own metadata declares.
//
// It owns these container formats (the RAUC manifest, SWUpdate's
// libconfig sw-description and newc cpio, Mender's tar layout). It does
// not verify the vendors' signatures over the artifacts (RAUC CMS,
// SWUpdate sw-description.sig, Mender manifest.sig): the release's
// binding to Ratatouille is the hub's signed policy over the image
// digest, not the OTA vendor's key. It reads root file systems only
// through ota/rootfs and must not import hub, network or storage packages.
package release

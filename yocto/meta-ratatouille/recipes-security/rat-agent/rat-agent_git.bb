SUMMARY = "Ratatouille attestation agent"
DESCRIPTION = "Continuous TPM 2.0 remote attestation: sends TPM quotes and the \
IMA measurement log to a Ratatouille hub over MQTT, enrolls its attestation \
key by credential activation against the TPM's endorsement key."
HOMEPAGE = "https://github.com/ratatouille/rat"
SECTION = "security"

# The repository does not carry a LICENSE file yet, so the project's own
# code is CLOSED here; rat-agent-licenses.inc appends the licenses of the
# Go modules that are linked in. Replace CLOSED (and add the project's
# LIC_FILES_CHKSUM) when the repository gets a license.
LICENSE = "CLOSED"

# https://github.com/ratatouille/rat.git is the project's placeholder
# address: point SRC_URI at your mirror of the repository with a bbappend.
# SRCREV is fixed (never AUTOREV: it cannot be resolved offline) and is
# rewritten by `make yocto-mods` together with the two .inc files, so the
# modules listed there are the ones device/go.sum names at that commit.
SRC_URI = "git://github.com/ratatouille/rat.git;protocol=https;branch=main;destsuffix=${GO_SRCURI_DESTSUFFIX} \
           file://rat-agent.service \
           file://rat-agent.conf \
           "
SRCREV = "00ce28bf039d34bca2c825af6cf7a5b56a921be7"
PV = "0.1+git"

require ${BPN}-go-mods.inc
require ${BPN}-licenses.inc

# The agent is the device module (device/go.mod) of the repository; it
# replaces the evidence module with ../evidence, so the whole repository is
# unpacked at GO_IMPORT and the go command runs in its device/ directory.
GO_IMPORT = "github.com/ratatouille/rat"
GO_WORKDIR = "${GO_IMPORT}/device"
GO_INSTALL = "${GO_IMPORT}/device/cmd/rat-agent"

# Pure Go (no cgo); every module comes from the gomod:// SRC_URI entries,
# never from the network, and the go command must not fetch a toolchain.
export CGO_ENABLED = "0"
export GOPROXY = "off"
export GOTOOLCHAIN = "local"

# The go directive of device/go.mod (make yocto-mods keeps it in step):
# with GOTOOLCHAIN=local an older Go cannot build the module, so do_compile
# stops first and says why (styhead ships Go 1.22; yocto/README.md).
RAT_AGENT_GO_MIN = "1.24"

inherit go-mod systemd

do_compile:prepend() {
    have=$(${GO} env GOVERSION)
    if [ "$(printf '%s\n' go${RAT_AGENT_GO_MIN} $have | sort -V | head -n1)" != "go${RAT_AGENT_GO_MIN}" ]; then
        bbfatal "rat-agent needs Go >= ${RAT_AGENT_GO_MIN} (device/go.mod), this build has $have; see yocto/README.md"
    fi
}

SYSTEMD_SERVICE:${PN} = "rat-agent.service"

# Install the agent, its unit and the commented configuration only:
# go.bbclass's default would also copy the whole source tree into -dev.
do_install() {
    install -d ${D}${bindir}
    install -m 0755 ${B}/${GO_BUILD_BINDIR}/rat-agent ${D}${bindir}/rat-agent
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${UNPACKDIR}/rat-agent.service ${D}${systemd_system_unitdir}/rat-agent.service
    install -d -m 0755 ${D}${sysconfdir}/rat-agent
    install -m 0600 ${UNPACKDIR}/rat-agent.conf ${D}${sysconfdir}/rat-agent/rat-agent.conf
}

FILES:${PN} += "${systemd_system_unitdir}/rat-agent.service"
CONFFILES:${PN} = "${sysconfdir}/rat-agent/rat-agent.conf"

# The agent measures nothing itself: it needs IMA and a TPM in the kernel
# (linux-yocto_%.bbappend adds both) and securityfs mounted (systemd does).
RRECOMMENDS:${PN} += "ima-policy-ratatouille"

SUMMARY = "Exec-only IMA measurement policy for Ratatouille attestation"
DESCRIPTION = "Measures executed programs, executable mappings, kernel \
modules and firmware into PCR 10 with the ima-ng template, skipping pseudo \
and volatile file systems except for programs executed from tmpfs/ramfs. \
systemd loads /etc/ima/ima-policy at boot; meta-integrity's initramfs \
loads it with IMA_POLICY = \"ima-policy-ratatouille\"."
HOMEPAGE = "https://github.com/ratatouille/rat"
SECTION = "security"
LICENSE = "MIT"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302"

SRC_URI = "file://ima-policy"

S = "${UNPACKDIR}"

inherit allarch

do_install() {
    install -d ${D}${sysconfdir}/ima
    install -m 0644 ${UNPACKDIR}/ima-policy ${D}${sysconfdir}/ima/ima-policy
}

FILES:${PN} = "${sysconfdir}/ima/ima-policy"

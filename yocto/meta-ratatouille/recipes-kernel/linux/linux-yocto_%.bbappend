# IMA on PCR 10 (sha256, ima-ng) and built-in TPM TIS/CRB/SPI drivers, only
# when the distro opts in with DISTRO_FEATURES:append = " ratatouille", so
# that adding the layer alone changes no other recipe.
FILESEXTRAPATHS:prepend := "${THISDIR}/files:"
SRC_URI:append = "${@bb.utils.contains('DISTRO_FEATURES', 'ratatouille', ' file://ratatouille-ima-tpm.cfg', '', d)}"

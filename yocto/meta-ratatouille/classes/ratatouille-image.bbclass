# Put the Ratatouille agent and its IMA policy into an image:
#
#   inherit ratatouille-image            (in an image recipe), or
#   IMAGE_CLASSES += "ratatouille-image" (in local.conf, for every image)
#
# It needs systemd as init manager (the agent ships as a hardened systemd
# unit; systemd loads /etc/ima/ima-policy) and the "ratatouille" distro
# feature, which turns on the kernel fragment of linux-yocto_%.bbappend.
# Without them the image is skipped with the reason.

inherit features_check
REQUIRED_DISTRO_FEATURES += "ratatouille systemd"

IMAGE_INSTALL:append = " rat-agent ima-policy-ratatouille"

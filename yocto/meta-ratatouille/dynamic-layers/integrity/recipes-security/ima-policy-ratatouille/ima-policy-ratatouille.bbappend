# With meta-integrity present: its policy recipes install the same file,
# /etc/ima/ima-policy, so only one of them may be in an image. Select this
# one for meta-integrity's initramfs loader with IMA_POLICY = "ima-policy-ratatouille".
RCONFLICTS:${PN} += "ima-policy-hashed ima-policy-simple ima-policy-appraise-all"

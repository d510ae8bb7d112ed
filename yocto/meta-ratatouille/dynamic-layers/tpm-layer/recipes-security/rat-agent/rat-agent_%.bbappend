# With meta-tpm present: tpm2-tools next to the agent lets a field engineer
# read PCRs and EK certificates by hand (the agent itself needs none of it).
RRECOMMENDS:${PN} += "tpm2-tools"

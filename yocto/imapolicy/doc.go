// Package imapolicy parses IMA policy files under the grammar the Linux
// kernel's policy parser (security/integrity/ima/ima_policy.c,
// Documentation/ABI/testing/ima_policy) accepts: one rule a line, "#" lines
// and blank lines ignored, each rule an action and conditions.
//
// Why it exists: the kernel refuses a whole policy when one rule is wrong,
// and it learns that only at boot, when systemd writes /etc/ima/ima-policy
// into securityfs; a device then boots with no measurement policy and its
// attestation fails for a reason nobody sees in the build. The layer test
// parses meta-ratatouille's policy with this package so a bad rule fails
// CI instead.
//
// It is stricter than the kernel where the kernel's leniency only hides
// mistakes: the action must come first (the kernel checks template=, pcr=
// and appraise_type= against the action it has seen so far). It imports
// nothing of the project.
package imapolicy

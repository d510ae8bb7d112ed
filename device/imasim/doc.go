// Package imasim is a simulated IMA source for tests and the demo: it
// measures files the way the kernel's IMA does with an ima-ng template —
// appends the entry to a binary measurement list and extends PCR 10 of the
// TPM with the SHA-256 of the template data — so that the agent, the hub and
// an auditor see exactly what they would see on a real kernel.
//
// It writes only whole entries (one write per entry, before the PCR extend,
// as the kernel orders them), so a reader never sees a torn entry. It must
// not import hub-side packages.
package imasim

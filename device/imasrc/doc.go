// Package imasrc is where the agent reads the IMA measurement list: the
// kernel's securityfs (binary_runtime_measurements and
// runtime_measurements_count) on a device, or a binary log file that a
// simulated IMA source appends to in tests and the demo.
//
// Reads are incremental: the agent asks for the entries from an offset on,
// and only new bytes are parsed. It must not import hub-side packages.
package imasrc

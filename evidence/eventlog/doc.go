// Package eventlog reads the TCG PC Client firmware event log (the
// kernel's binary_bios_measurements): the crypto-agile form (TCG_PCR_EVENT2
// after a "Spec ID Event03" header) and the SHA-1-only legacy form. It
// replays the log into PCR values, compares them with quoted PCRs, and
// reports the Secure Boot state that PCR 7 records.
//
// Nothing the log says is believed until Verify has matched its replay to
// PCR values from a verified quote: Parse and SecureBoot only decode.
// Every length field is bounded by the bytes that remain, so hostile input
// cannot make the parser allocate more than the input's size.
//
// It is pure: no files, no TPM, no network. It must not import any package
// of this project except evidence/failure.
package eventlog

// Package ima reads Linux IMA measurement lists (the ascii and binary
// runtime_measurements files) and replays them into PCR values.
//
// It owns the Entry type shared by the runtime-policy evaluator, the agent
// and the auditor. It is pure: no files, no network. It must not import
// any other package of this project except evidence/failure.
package ima

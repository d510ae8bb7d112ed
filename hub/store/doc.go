// Package store is the hub's persistent state: device records (identity,
// chain position, verdict), their event history, the evidence records they
// sent (kept for export to offline bundles), and runtime policies per group.
//
// The Store interface is deliberately narrow — whole-record reads and one
// atomic write per processed message — so that a PostgreSQL backend can be
// added without touching the verifier. The embedded implementation is
// bbolt; concurrent writers are coalesced with bbolt's Batch, so many
// devices' updates share one fsync.
//
// It must not import the MQTT, HTTP or verifier packages.
package store

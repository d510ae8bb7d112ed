// Package outbox is the agent's durable evidence queue and state, in one
// bbolt file.
//
// Every evidence record is committed here (fsync'd) before it is
// published, and deleted only when the hub acknowledges it, so a broker
// restart, a network cut or a power loss loses nothing that was pending.
// The agent's chain state (next sequence number, previous quote digest,
// newest nonce, IMA position) is committed in the same transaction as the
// records it produced, so the two can never disagree after a crash.
//
// The outbox is bounded. IMA-bearing records are never dropped; when the
// bound is reached, a new heartbeat replaces the newest unsent heartbeat,
// and the replacement records how many it stands for (Thinned) and chains
// to the record before the one it replaced, so the hub still sees an
// unbroken chain and knows exactly what was thinned.
//
// It must not import hub-side packages.
package outbox

// Package api is the hub's HTTP API (JSON): devices, a device's detail and
// history, groups, policies, health, and Prometheus metrics. Every route but
// /healthz needs the operator token (Authorization: Bearer <token>),
// compared in constant time; put the hub behind a TLS-terminating proxy
// with client certificates for mTLS (docs/operator.md).
//
// Other hub packages mount their handlers here (the Git webhook, the token
// endpoints) through Mount. It uses net/http only.
package api

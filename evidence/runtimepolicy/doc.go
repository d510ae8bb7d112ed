// Package runtimepolicy reads, validates, evaluates and generates Keylime
// runtime policies (the JSON format of keylime/ima/ima.py's
// RUNTIME_POLICY_SCHEMA): allowed file digests per path, exclude regexes,
// keyrings, ima-buf digests and IMA options.
//
// It owns the policy format and the policy-vs-log judgement; it does not
// parse IMA logs (evidence/ima does) and must not import network, storage
// or hub packages.
package runtimepolicy

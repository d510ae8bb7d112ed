// Package wire is the evidence bundle's format on the producing side: the
// element types, media and collection types, and the streaming Encoder.
// Package bundle (the decoder, the COSE signatures, the AK binding)
// re-exports all of it under the same names; use bundle unless binary size
// matters.
//
// It exists for the device agent: it writes the CMW items (a monad is the
// CBOR array [media type, value], a collection the map of its items plus
// "__cmwc_t") directly with fxamacker/cbor in core deterministic encoding,
// byte for byte what veraison/cmw writes, without importing veraison/cmw
// or veraison/go-cose. Importing either would link their regexp, JSON,
// MIME and COSE code into the agent (about 0.4 MB of a 7 MB budget).
// The decoder in bundle still decodes with veraison/cmw and refuses any
// element whose re-encoding differs, so the two cannot drift apart
// silently; wire's tests compare with veraison/cmw directly.
package wire

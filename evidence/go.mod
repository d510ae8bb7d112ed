module github.com/ratatouille/rat/evidence

go 1.24

require (
	github.com/fxamacker/cbor/v2 v2.9.6
	github.com/google/go-tpm v0.9.8
	github.com/santhosh-tekuri/jsonschema/v6 v6.0.3
	github.com/veraison/cmw v0.2.0
	github.com/veraison/go-cose v1.3.0
	golang.org/x/text v0.14.0
)

require (
	github.com/stretchr/testify v1.11.1 // indirect
	github.com/x448/float16 v0.8.4 // indirect
	golang.org/x/sys v0.35.0 // indirect
)

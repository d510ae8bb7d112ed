module github.com/google/go-tpm

go 1.22

require (
	github.com/google/go-cmp v0.5.9
	github.com/google/go-tpm-tools v0.3.13-0.20230620182252-4639ecce2aba
	golang.org/x/sys v0.8.0
)

module github.com/ratatouille/rat/device

go 1.24

replace github.com/ratatouille/rat/evidence => ../evidence

require (
	github.com/google/go-tpm v0.9.8
	github.com/ratatouille/rat/evidence v0.0.0
)

require golang.org/x/sys v0.35.0 // indirect

module github.com/ratatouille/rat/device

go 1.24.0

replace github.com/ratatouille/rat/evidence => ../evidence

require (
	github.com/eclipse/paho.mqtt.golang v1.5.1
	github.com/fxamacker/cbor/v2 v2.9.6
	github.com/google/go-tpm v0.9.8
	github.com/ratatouille/rat/evidence v0.0.0
	go.etcd.io/bbolt v1.4.3
)

require (
	github.com/gorilla/websocket v1.5.3 // indirect
	github.com/x448/float16 v0.8.4 // indirect
	golang.org/x/net v0.44.0 // indirect
	golang.org/x/sync v0.17.0 // indirect
	golang.org/x/sys v0.36.0 // indirect
)

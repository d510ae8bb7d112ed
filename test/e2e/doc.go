// Package e2e is the real-kernel end-to-end test (make e2e, test/e2e/run.sh):
// a Debian kernel, downloaded as a .deb and cached under .cache/e2e, boots
// under qemu (software emulation) from an initramfs holding busybox and the
// static rat-agent, with swtpm as its TPM (EK certificates from a CA the
// test makes) and IMA on (ima_policy=tcb). The agent in the guest attests to
// a rat-hub on the host over MQTT carried by a virtio-serial port whose qemu
// chardev is a loopback TCP connection to the hub's embedded broker; the
// guest has no network.
//
// It owns the proof that the product works on a real kernel's IMA log, a
// real TPM driver and real firmware event logs (SeaBIOS and OVMF), which the
// unit and integration tests only simulate. Its tests carry the e2e build
// tag, so `go test ./...` skips them; they skip when qemu, swtpm or the
// kernel is missing and fail instead under RAT_REQUIRE_INTEGRATION=1.
//
// Run it with test/e2e/run.sh (make e2e builds bin/ first). RAT_BIN names
// another directory of rat-agent, rat-hub and rat-audit binaries;
// RAT_E2E_LOGS keeps the consoles, swtpm and hub logs and the exported
// bundle; RAT_E2E_KERNEL_PKG picks the kernel package (default: the one
// linux-image-amd64 depends on).
//
// It holds tests only: nothing may import it, and it imports no project
// package — the hub is driven through its binary and HTTP API, the guest
// through its console.
package e2e

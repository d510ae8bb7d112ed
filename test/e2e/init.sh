#!/bin/sh
# Guest init of the real-kernel e2e test (test/e2e): mounts, loads the
# virtio-serial driver, starts rat-agent on the port named rat.mqtt, then
# obeys one-word commands read from the console. It is the same file on
# every boot, so that its IMA measurement is too; a boot's parameters come
# from the kernel command line (rat.id=, rat.group=, rat.baseline=1).
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t securityfs securityfs /sys/kernel/security
mount -t devtmpfs devtmpfs /dev
# The agent's state on tmpfs: ima_policy=tcb does not measure tmpfs, so the
# outbox being rewritten does not make measurements (or violations).
mount -t tmpfs tmpfs /var/lib/rat-agent
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_console; do
  insmod /lib/modules/$m.ko || echo "rat-e2e: insmod $m failed"
done
id=guest; group=e2e; baseline=
for w in $(cat /proc/cmdline); do
  case "$w" in
    rat.id=*) id=${w#rat.id=} ;;
    rat.group=*) group=${w#rat.group=} ;;
    rat.baseline=1) baseline=--baseline ;;
  esac
done
# The port shows up once the host's virtio-serial control messages arrive.
port=; n=0
while [ -z "$port" ] && [ $n -lt 200 ]; do
  for p in /sys/class/virtio-ports/*; do
    [ -e "$p/name" ] && [ "$(cat "$p/name")" = rat.mqtt ] && [ -e "/dev/${p##*/}" ] && port=/dev/${p##*/}
  done
  [ -n "$port" ] || sleep 0.1
  n=$((n+1))
done
if [ -z "$port" ]; then echo "rat-e2e: no virtio-serial port rat.mqtt"; poweroff -f; fi
# Read (and so measure) what the agent reads before its first quote.
cat /etc/os-release >/dev/null
# The line after the agent tells the host not to wait for it any more.
(/bin/rat-agent run --serial "$port" --device-id "$id" --group "$group" --tpm /dev/tpmrm0 \
  --state /var/lib/rat-agent --poll 200ms --heartbeat 3s $baseline
 echo "rat-e2e: agent exited with status $?") &
echo "rat-e2e: ready port=$port id=$id"
while read -r cmd; do
  case "$cmd" in
    dropper)
      # A program the policy has never seen, written and run after enrollment.
      printf '#!/bin/sh\necho rat-e2e: dropper ran\n' > /root/dropper
      chmod 0755 /root/dropper
      /root/dropper ;;
    ima)
      echo "rat-e2e: ima entries $(cat /sys/kernel/security/ima/runtime_measurements_count)" ;;
    poweroff)
      poweroff -f ;;
  esac
done
poweroff -f

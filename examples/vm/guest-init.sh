#!/bin/busybox sh
# /init of the pvio VFIO test guest: load the VFIO modules, bind both NICs to vfio-pci, run
# /vfio_probe on each, print the results between markers the host checks, power off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "[guest] up at $(cut -d' ' -f1 /proc/uptime)s"
for m in irqbypass vfio vfio_iommu_type1 vfio_virqfd vfio-pci-core vfio-pci; do
  insmod /lib/modules/$m.ko || echo "[guest] insmod $m FAILED"
done
rc=0
for d in /sys/bus/pci/devices/*; do
  id="$(cat $d/vendor):$(cat $d/device)"
  case $id in 0x8086:0x10d3|0x1af4:0x1041) ;; *) continue;; esac
  bdf=$(basename $d)
  [ -e $d/driver ] && echo $bdf > $d/driver/unbind
  echo vfio-pci > $d/driver_override
  echo $bdf > /sys/bus/pci/drivers_probe
  echo "[guest] $bdf $id driver=$(basename $(readlink $d/driver)) group=$(basename $(readlink $d/iommu_group))"
  echo "=== vfio_probe $bdf"
  /vfio_probe $bdf || rc=1
done
echo "[guest] done rc=$rc at $(cut -d' ' -f1 /proc/uptime)s"
poweroff -f

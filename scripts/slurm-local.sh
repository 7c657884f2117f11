#!/usr/bin/env bash
# A real one-node Slurm cluster on localhost (Debian's slurm-wlm and munge), for tests and for
# trying `transferbench submit` on a workstation.  Run as root.  Accounting is off (no sacct).
#
#   scripts/slurm-local.sh start [DIR]   # writes DIR/slurm.conf, starts munged, slurmctld, slurmd
#   scripts/slurm-local.sh stop [DIR]    # stops them by the pids recorded in DIR
#
# DIR defaults to /tmp/transferbench-slurm.  After `start`, use the cluster with
#   export SLURM_CONF=DIR/slurm.conf
set -euo pipefail

action=${1:-}
dir=$(realpath -m "${2:-/tmp/transferbench-slurm}")
conf="$dir/slurm.conf"

die() { echo "slurm-local: $*" >&2; exit 1; }

stop() {
    for name in slurmd slurmctld munged; do
        pidfile="$dir/$name.pid"
        [ -f "$pidfile" ] || continue
        pid=$(cat "$pidfile")
        if kill -0 "$pid" 2>/dev/null; then
            kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
            kill -9 "$pid" 2>/dev/null || true
        fi
        rm -f "$pidfile"
    done
}

start() {
    for tool in munged slurmctld slurmd sbatch; do
        command -v "$tool" >/dev/null || die "$tool is missing: apt-get install slurm-wlm munge"
    done
    [ "$(id -u)" = 0 ] || die "run as root (slurmd must be able to start jobs as any user)"
    stop
    mkdir -p "$dir/state" "$dir/spool" "$dir/munge" "$dir/log"
    chmod 700 "$dir/munge"
    host=$(hostname -s)
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    # Ports: pick free ones so a second cluster or a stale one does not collide.
    read -r ctld_port slurmd_port < <(python3 -c '
import socket
ports = []
for _ in range(2):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); ports.append(s.getsockname()[1]); s.close()
print(*ports)')
    cat > "$conf" <<CONF
ClusterName=transferbench
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1,bf_interval=1
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=10
MinJobAge=30
MessageTimeout=20
NodeName=$host NodeAddr=127.0.0.1 CPUs=4 RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
CONF
    [ -f /etc/munge/munge.key ] || die "/etc/munge/munge.key is missing: reinstall munge (or run mungekey)"
    munged --force --socket="$dir/munge/munge.socket" --pid-file="$dir/munged.pid" \
        --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munge.seed"
    SLURM_CONF=$conf slurmctld -f "$conf"
    SLURM_CONF=$conf slurmd -f "$conf"
    for _ in $(seq 100); do
        if SLURM_CONF=$conf sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
            echo "slurm-local: cluster up; export SLURM_CONF=$conf"
            return 0
        fi
        sleep 0.2
    done
    tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    stop
    die "the node did not come up in 20 s (logs above, in $dir/log)"
}

case "$action" in
    start) start ;;
    stop) stop; echo "slurm-local: stopped" ;;
    *) die "usage: $0 start|stop [DIR]" ;;
esac

#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for trying workflow/profiles/slurm for real
# (Debian/Ubuntu packages slurmctld, slurmd, slurm-client, munge; needs root):
#   .ci/local-slurm.sh start      # installs the packages when missing, starts munge + SLURM
#   snakemake --profile workflow/profiles/slurm --slurm-status-command squeue --slurm-no-account
#   .ci/local-slurm.sh stop
#
# Two partitions on the same node: `cpu` (default) and `gpu`, with two countable `gpu` GRES
# backed by empty files (no devices), so the plugin's partition selection sends `gpu=1` rules
# to `gpu`. No accounting daemon runs, hence `squeue` as the status command and no account;
# instead every finished job is written by jobcomp/filetxt to $LOCAL_SLURM_STATE/jobcomp.log
# (its partition, state, time limit, memory and GRES), which tests/test_slurm.py reads.
# Adapted from ../shared/tools/local-slurm.sh (job completion log and status added here).
set -euo pipefail
cmd=${1:-start}
state=${LOCAL_SLURM_STATE:-${TMPDIR:-/tmp}/galforge-slurm}

stop() {
  local pids="" f p alive
  for f in "$state/slurmd.pid" "$state/slurmctld.pid"; do
    [ -s "$f" ] && pids="$pids $(cat "$f")"
  done
  [ -n "$pids" ] && kill $pids 2>/dev/null || true
  for _ in $(seq 30); do
    alive=""; for p in $pids; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ -z "$alive" ] && break; sleep 0.5
  done
  rm -f "$state/slurmd.pid" "$state/slurmctld.pid"
}

case "$cmd" in
start)
  if [ "$(id -u)" != 0 ]; then echo "local-slurm.sh: start needs root" >&2; exit 1; fi
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
      || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
  fi
  # another one-node cluster (e.g. started by ../shared/tools/local-slurm.sh) would hold the ports
  stop
  pkill -x slurmctld 2>/dev/null || true; pkill -x slurmd 2>/dev/null || true
  mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge "$state"
  [ -s /etc/munge/munge.key ] || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
  chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
  host=$(hostname -s); cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 8 / 10 ))
  touch "$state/gpu0" "$state/gpu1"
  : > "$state/jobcomp.log"
  cat > /etc/slurm/slurm.conf <<CONF
ClusterName=local
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=$state/slurmctld.pid
SlurmdPidFile=$state/slurmd.pid
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$state/jobcomp.log
MinJobAge=3600
ReturnToService=2
GresTypes=gpu
NodeName=$host CPUs=$cpus RealMemory=$mem Gres=gpu:2 State=UNKNOWN
PartitionName=cpu Nodes=$host Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=$host MaxTime=INFINITE State=UP
CONF
  echo "NodeName=$host Name=gpu File=$state/gpu[0-1]" > /etc/slurm/gres.conf
  pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
  /usr/sbin/slurmctld -c; sleep 1; /usr/sbin/slurmd -c
  for _ in $(seq 60); do
    sinfo -h -o %T 2>/dev/null | grep -qE 'idle|mixed' && break; sleep 1
    scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true
  done
  sinfo -h -o %T | grep -qE 'idle|mixed' || { echo "local-slurm.sh: the node did not come up" >&2; exit 1; }
  sinfo
  ;;
stop)
  stop
  ;;
*) echo "usage: $0 start|stop" >&2; exit 2;;
esac

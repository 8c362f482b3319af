# bench-lib.sh: shell functions the benchmark scripts share (sourced, not run).

# The 1-minute load average.
load1() { cut -d' ' -f1 /proc/loadavg; }

# Waits up to $WAIT_S seconds for the load average to drop below $LOAD_MAX; $1 names the script in
# the message.
wait_for_idle() {
  local waited=0
  while awk -v l="$(load1)" -v m="$LOAD_MAX" 'BEGIN { exit !(l >= m) }' && [ "$waited" -lt "$WAIT_S" ]; do
    [ "$waited" -eq 0 ] && echo "$1: load average $(load1) >= $LOAD_MAX; waiting up to ${WAIT_S}s for it to drop" >&2
    sleep 10; waited=$((waited + 10))
  done
}

now() { date +%s.%N; }

# peak RSS (MB) from a /usr/bin/time -v report
peak_mb() { awk -F': *' '/Maximum resident set size/ { printf "%.1f", $2 / 1024 }' "$1"; }

# Adds "round": $1 to every JSON line on stdin (repeated measurements of one thing).
tagged_round() { sed "s/}\$/,\"round\":$1}/"; }

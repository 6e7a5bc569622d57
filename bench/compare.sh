#!/usr/bin/env bash
# bench/compare.sh: nodedns side by side with CoreDNS, Unbound and dnsmasq.
#
# Everything runs on loopback. A CoreDNS `file` server on 127.0.0.2 is the
# only upstream; every server under test forwards to it and nowhere else.
# Each server is pinned to one CPU (default 0), dnsperf to another (default 1),
# and the servers are measured interleaved, round after round, so that all
# ratios compare runs taken minutes apart at most. See BENCHMARKS.md.
#
# Scenarios:
#   hits   cache hits over NAMES names under bench.example (warm cache):
#          nodedns, CoreDNS cache+forward, Unbound (1 thread), dnsmasq
#   zone   cluster-zone answers, A of every Service (1 of 10 headless):
#          nodedns vs CoreDNS's kubernetes plugin, same objects
#   ndots  the ndots:5 storm: nXXXX.bench.example.{default.svc.,svc.,}cluster.local
#          -> NXDOMAIN, nodedns vs CoreDNS's kubernetes plugin
#
# For each server and scenario: max QPS (dnsperf unthrottled), p99 latency,
# and server CPU per answered query at a fixed offered rate, and RSS.
#
# Usage: bash bench/compare.sh [--quick] [options]   (-h for the list)
set -euo pipefail

COREDNS_VERSION=v1.15.0

usage() {
	cat <<'EOF'
Usage: bash bench/compare.sh [--quick] [options]

  --quick               smoke run: 1 round of 4 s runs, 2 warm-up passes (~2 min)
  --rounds N            interleaved rounds (default 3; env BENCH_ROUNDS)
  --duration S          seconds per dnsperf run (default 10; env BENCH_DURATION)
  --rate QPS            fixed offered rate for latency and CPU/query (default 10000; env BENCH_RATE)
  --warm N              warm-up passes over the query file before each run (default 3)
  --names N             names in the upstream zone / cache-hit query file (default 1000)
  --services N          Services in the cluster zone (default 1000; 1 in 10 headless, 3 endpoints)
  --clients N           dnsperf -c (default 4)
  --scenarios LIST      comma-separated subset of hits,zone,ndots (default all)
  --nodedns-source S    what feeds nodedns in zone/ndots: api (the same API server as
                        CoreDNS, default), file (the generated zone file), or both
  --with-coredns-k8s-cache
                        also measure CoreDNS kubernetes + `cache 30` (the stock
                        kube-dns Corefile shape) in zone/ndots
  --baseline PATH       also measure another nodedns, interleaved with this tree's, as
                        nodedns-base / nodedns-k8s-base: a binary, or a source tree
                        (built with go build ./cmd/nodedns), e.g. a git worktree of HEAD
  --skip LIST           comma-separated peers not to run in hits: unbound,dnsmasq
  --server-cpu N        CPU for the server under test (default 0)
  --client-cpu N        CPU for dnsperf, the upstream and the API server (default 1)
  --nice N              run the servers under test and dnsperf at this nice level (default 0;
                        e.g. -10 shields them from other load on a shared machine, at
                        that load's expense; below 0 needs root)
  --out FILE            also write the Markdown report to FILE
  --keep                keep the work directory (logs, configs, raw results)
  --report-from DIR     only print (and --out) the report of a run kept with --keep
  --no-install          do not apt-get install missing packages
  -h, --help            this help

Options apply in order, so put --quick first to override parts of it.
Env: NODEDNS_CACHE (default ~/.cache/nodedns) holds the CoreDNS, kube-apiserver
and etcd builds; NODEDNS_BENCH_ARGS adds flags to every nodedns started.
EOF
}

ROUNDS=${BENCH_ROUNDS:-3}
DURATION=${BENCH_DURATION:-10}
RATE=${BENCH_RATE:-10000}
WARM=${BENCH_WARM:-3}
NAMES=${BENCH_NAMES:-1000}
SERVICES=${BENCH_SERVICES:-1000}
CLIENTS=${BENCH_CLIENTS:-4}
SCENARIOS=${BENCH_SCENARIOS:-hits,zone,ndots}
NODEDNS_SOURCE=${BENCH_NODEDNS_SOURCE:-api}
K8S_CACHE=0
BASELINE=
SKIP=
NODEDNS_BASE_REV=
SERVER_CPU=0
CLIENT_CPU=1
NICE=0
OUT=
KEEP=0
INSTALL=1
REPORT_FROM=
POLICY_TO_REMOVE= SUDO=

need_arg() { [[ $# -ge 2 && -n $2 ]] || { echo "compare.sh: $1 needs a value" >&2; exit 2; }; }
while [[ $# -gt 0 ]]; do
	case $1 in
	--quick) ROUNDS=1 DURATION=4 WARM=2 ;;
	--rounds) need_arg "$@"; ROUNDS=$2; shift ;;
	--duration) need_arg "$@"; DURATION=$2; shift ;;
	--rate) need_arg "$@"; RATE=$2; shift ;;
	--warm) need_arg "$@"; WARM=$2; shift ;;
	--names) need_arg "$@"; NAMES=$2; shift ;;
	--services) need_arg "$@"; SERVICES=$2; shift ;;
	--clients) need_arg "$@"; CLIENTS=$2; shift ;;
	--scenarios) need_arg "$@"; SCENARIOS=$2; shift ;;
	--nodedns-source) need_arg "$@"; NODEDNS_SOURCE=$2; shift ;;
	--with-coredns-k8s-cache) K8S_CACHE=1 ;;
	--baseline) need_arg "$@"; BASELINE=$2; shift ;;
	--skip) need_arg "$@"; SKIP=$2; shift ;;
	--server-cpu) need_arg "$@"; SERVER_CPU=$2; shift ;;
	--client-cpu) need_arg "$@"; CLIENT_CPU=$2; shift ;;
	--nice) need_arg "$@"; NICE=$2; shift ;;
	--out) need_arg "$@"; OUT=$2; shift ;;
	--keep) KEEP=1 ;;
	--report-from) need_arg "$@"; REPORT_FROM=$2; shift ;;
	--no-install) INSTALL=0 ;;
	-h | --help) usage; exit 0 ;;
	*) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
	esac
	shift
done

die() { echo "compare.sh: $*" >&2; exit 1; }
log() { printf '%s compare: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

for v in ROUNDS DURATION RATE NAMES SERVICES CLIENTS SERVER_CPU CLIENT_CPU; do
	[[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a number, got '${!v}'"
done
[[ $WARM =~ ^[0-9]+$ ]] || die "WARM must be a number"
[[ $NICE =~ ^-?[0-9]+$ ]] && ((NICE >= -20 && NICE <= 19)) || die "--nice: want -20..19"
((ROUNDS >= 1 && DURATION >= 1 && RATE >= 100 && NAMES >= 1 && NAMES <= 9999 && SERVICES >= 1)) ||
	die "want rounds >= 1, duration >= 1, rate >= 100, 1 <= names <= 9999, services >= 1"
((SERVER_CPU != CLIENT_CPU)) || die "--server-cpu and --client-cpu must differ"
case $NODEDNS_SOURCE in api | file | both) ;; *) die "--nodedns-source: want api, file or both" ;; esac
DO_HITS=0 DO_ZONE=0 DO_NDOTS=0
IFS=, read -ra _sc <<<"$SCENARIOS"
for s in "${_sc[@]}"; do
	case $s in
	hits) DO_HITS=1 ;; zone) DO_ZONE=1 ;; ndots) DO_NDOTS=1 ;;
	*) die "--scenarios: unknown scenario '$s' (want hits, zone, ndots)" ;;
	esac
done
IFS=, read -ra _sk <<<"$SKIP"
for s in "${_sk[@]}"; do
	case $s in unbound | dnsmasq) ;; *) die "--skip: want unbound and/or dnsmasq, got '$s'" ;; esac
done
skipped() { [[ ,$SKIP, == *",$1,"* ]]; }
[[ -z $BASELINE || -x $BASELINE || -d $BASELINE ]] || die "--baseline: $BASELINE is neither an executable nor a directory"
NEED_K8S=$((DO_ZONE | DO_NDOTS))
((DO_HITS | NEED_K8S)) || die "--scenarios: nothing to run"

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${NODEDNS_CACHE:-$HOME/.cache/nodedns}
COREDNS_BIN=$CACHE/bin/coredns-$COREDNS_VERSION
CLK_TCK=$(getconf CLK_TCK)
START_TIME=$SECONDS

# --- checks ------------------------------------------------------------------

[[ $(uname -s) == Linux ]] || die "Linux only (taskset, /proc)"
command -v taskset >/dev/null || die "taskset (util-linux) is missing"
command -v go >/dev/null || die "go is missing"
allowed=$(taskset -pc $$ | sed 's/.*: //')
cpu_allowed() { # N: is CPU N in our affinity list ("0,1" or "0-3")?
	local part lo hi
	IFS=, read -ra parts <<<"$allowed"
	for part in "${parts[@]}"; do
		lo=${part%-*} hi=${part#*-}
		((lo <= $1 && $1 <= hi)) && return 0
	done
	return 1
}
cpu_allowed "$SERVER_CPU" && cpu_allowed "$CLIENT_CPU" ||
	die "CPUs $SERVER_CPU and $CLIENT_CPU must both be usable (this shell may use: $allowed)"

# --- packages ----------------------------------------------------------------

deb_installed() { [[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]; }

install_debs() {
	local missing=() p
	for p in dnsperf unbound dnsmasq-base dnsutils iproute2; do
		deb_installed "$p" || missing+=("$p")
	done
	((${#missing[@]})) || return 0
	((INSTALL)) || die "missing packages: ${missing[*]} (and --no-install given)"
	command -v apt-get >/dev/null || die "missing packages: ${missing[*]}; install them (Debian names)"
	local sudo=
	if ((EUID != 0)); then
		command -v sudo >/dev/null || die "need root or sudo to install ${missing[*]}"
		sudo="sudo -n"
	fi
	log "installing ${missing[*]}"
	# Debian starts a system unbound on :53 (and points resolv.conf at it)
	# when the package is installed. A policy-rc.d that exits 101 denies
	# every service start during the install; if one is already in place
	# we leave it alone.
	local policy=/usr/sbin/policy-rc.d before
	before=" $(pgrep -x unbound | tr '\n' ' ') "
	if [[ ! -e $policy ]]; then
		POLICY_TO_REMOVE=$policy SUDO=$sudo # cleanup removes it if we are interrupted
		printf '#!/bin/sh\n# bench/compare.sh: no service starts during its apt-get install\nexit 101\n' | $sudo tee "$policy" >/dev/null
		$sudo chmod 755 "$policy"
	fi
	local rc=0
	$sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -o Acquire::Retries=3 update -q </dev/null >&2 || rc=$?
	((rc)) || $sudo env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -o Acquire::Retries=3 \
		install -y -q --no-install-recommends "${missing[@]}" </dev/null >&2 || rc=$?
	if [[ -n $POLICY_TO_REMOVE ]]; then
		$sudo rm -f "$POLICY_TO_REMOVE"
		POLICY_TO_REMOVE=
	fi
	((rc == 0)) || die "apt-get failed ($rc)"
	# Belt and braces: an unbound that appeared during the install and runs
	# the packaged configuration is the system service; stop only that one.
	local pid cmd
	for pid in $(pgrep -x unbound || true); do
		[[ $before == *" $pid "* ]] && continue
		cmd=$(tr '\0' ' ' </proc/"$pid"/cmdline 2>/dev/null || true)
		if [[ $cmd != *" -c "* || $cmd == *"/etc/unbound/unbound.conf"* ]]; then
			log "stopping the system unbound the install started (pid $pid: $cmd)"
			if command -v systemctl >/dev/null && systemctl is-active --quiet unbound 2>/dev/null; then
				$sudo systemctl stop unbound || true
			else
				$sudo kill "$pid" || true
			fi
		fi
	done
	# Keep it from starting at the next boot (and from rewriting resolv.conf):
	# this script installed it for a benchmark, not as the node's resolver.
	if [[ " ${missing[*]} " == *" unbound "* ]] && command -v systemctl >/dev/null; then
		$sudo systemctl disable unbound.service unbound-resolvconf.service >/dev/null 2>&1 || true
	fi
}

# --- builds ------------------------------------------------------------------

build_coredns() {
	if [[ -x $COREDNS_BIN ]] && "$COREDNS_BIN" -version >/dev/null 2>&1; then
		log "CoreDNS $COREDNS_VERSION cached ($COREDNS_BIN)"
		return
	fi
	mkdir -p "$CACHE/bin"
	exec 8>"$CACHE/.coredns.lock"
	flock 8
	if [[ -x $COREDNS_BIN ]] && "$COREDNS_BIN" -version >/dev/null 2>&1; then
		exec 8>&-
		return # built by a parallel run while we waited
	fi
	log "building CoreDNS $COREDNS_VERSION (once; 2-5 min on 2 idle cores, 13 min seen under load)"
	local gobin start=$SECONDS
	gobin=$(mktemp -d "$CACHE/bin/.coredns-build.XXXXXX")
	# Outside the repository: never touches nodedns's go.mod.
	if ! (cd "$gobin" && GOWORK=off GOFLAGS= GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN=$gobin \
		go install "github.com/coredns/coredns@$COREDNS_VERSION") >&2; then
		rm -rf "$gobin"
		die "CoreDNS build failed"
	fi
	"$gobin/coredns" -version >&2
	mv -f "$gobin/coredns" "$COREDNS_BIN"
	rm -rf "$gobin"
	exec 8>&-
	log "CoreDNS built in $((SECONDS - start)) s"
}

# --- processes ---------------------------------------------------------------

declare -A PID=() PORT=()
ORDER=() # start order, for the stop order

cleanup() {
	local rc=$? i pid name
	trap - EXIT INT TERM
	[[ -n $POLICY_TO_REMOVE ]] && $SUDO rm -f "$POLICY_TO_REMOVE"
	for ((i = ${#ORDER[@]} - 1; i >= 0; i--)); do
		name=${ORDER[i]} pid=${PID[${ORDER[i]}]:-}
		[[ -n $pid ]] && kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null || true
	done
	for name in "${ORDER[@]}"; do
		pid=${PID[$name]:-}
		[[ -n $pid ]] || continue
		for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	if [[ -n ${WORK:-} && -d $WORK ]]; then
		if ((KEEP)); then
			echo "compare.sh: work directory kept: $WORK" >&2
		else
			rm -rf "$WORK"
		fi
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --nice: with autogroup scheduling a nice level counts only inside a
# session's group, so the new session (setsid) gets the same nice for its
# group, set from inside, then nice + exec.
NICE_WRAP=(sh -c 'echo "$0" >/proc/self/autogroup 2>/dev/null; exec nice -n "$0" "$@"' "$NICE")

# start NAME CPU CMD...: detached (own session, stdin /dev/null, log file),
# pinned to CPU. setsid, sh, nice and taskset exec, so $! is the server's own PID.
start() {
	local name=$1 cpu=$2
	shift 2
	echo "taskset -c $cpu $*" >"$WORK/logs/$name.cmd"
	if [[ $cpu == "$SERVER_CPU" ]] && ((NICE != 0)); then
		setsid "${NICE_WRAP[@]}" taskset -c "$cpu" "$@" </dev/null >"$WORK/logs/$name.log" 2>&1 &
	else
		setsid taskset -c "$cpu" "$@" </dev/null >"$WORK/logs/$name.log" 2>&1 &
	fi
	PID[$name]=$!
	ORDER+=("$name")
}

alive() { kill -0 "${PID[$1]}" 2>/dev/null; }

# Ports: random, below the usual ephemeral range (32768-60999, where the
# API server's, dnsperf's and the forwarders' own sockets land), not in use
# now, not handed out before.
declare -A USED_PORTS=()
for p in $(ss -Htuan 2>/dev/null | awk '{n = split($5, a, ":"); print a[n]}'); do USED_PORTS[$p]=1; done
pick_port() {
	local p
	while :; do
		p=$((20000 + RANDOM % 12000))
		[[ -z ${USED_PORTS[$p]:-} ]] && break
	done
	USED_PORTS[$p]=1
	echo "$p"
}

# answers NAME SERVER_PORT TYPE: "STATUS sorted-answers" from the server on 127.0.0.1.
answers() {
	local out status
	out=$(dig +tries=1 +time=1 -p "$2" @127.0.0.1 "$1" "${3:-A}" +noall +comments +answer 2>/dev/null) || {
		echo "NOANSWER"
		return
	}
	status=$(sed -n 's/.*status: \([A-Z]*\),.*/\1/p' <<<"$out" | head -1)
	echo "$status $(awk '!/^;/ && NF >= 5 {$1 = $2 = $3 = ""; print}' <<<"$out" | sort | tr '\n' ' ')"
}

# wait_answer NAME SERVER EXPECT_STATUS [TIMEOUT_S]
wait_answer() {
	local name=$1 srv=$2 want=$3 t=${4:-60} i a=
	for ((i = 0; i < t * 5; i++)); do
		alive "$srv" || die "$srv exited; log: $(tail -20 "$WORK/logs/$srv.log")"
		a=$(answers "$name" "${PORT[$srv]}")
		if [[ $a == "$want "* ]]; then
			# The PID we measure must be the server itself, not a wrapper.
			case $(cat "/proc/${PID[$srv]}/comm") in setsid | sh | nice | taskset) die "$srv: PID ${PID[$srv]} is a wrapper" ;; esac
			return 0
		fi
		sleep 0.2
	done
	die "$srv: no $want for $name after ${t}s (last: $a); log: $(tail -20 "$WORK/logs/$srv.log")"
}

# --- measurement helpers -----------------------------------------------------

proc_cpu_ticks() { # PID -> utime+stime of the whole process, in clock ticks
	local s
	s=$(<"/proc/$1/stat")
	s=${s##*) }
	# shellcheck disable=SC2086
	set -- $s
	echo $((${12} + ${13}))
}
proc_rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
# cpu_stat N -> "task irq steal total" ticks of CPU N from /proc/stat:
# task = user+nice+system (processes), irq = irq+softirq.
cpu_stat() {
	awk -v c="cpu$1" '$1 == c {print $2+$3+$4, $7+$8, $9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat
}

# dnsperf_run OUT ARGS...: dnsperf on the client CPU against 127.0.0.1
dnsperf_run() {
	local out=$1
	shift
	if ((NICE != 0)); then
		# Own session (autogroup) at the same nice, as the servers have.
		setsid -w "${NICE_WRAP[@]}" taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -q 100 -c "$CLIENTS" -t 2 "$@" >"$out" 2>&1 </dev/null || true
	else
		taskset -c "$CLIENT_CPU" dnsperf -s 127.0.0.1 -q 100 -c "$CLIENTS" -t 2 "$@" >"$out" 2>&1 || true
	fi
}
stat_field() { # FILE LABEL -> first number after "LABEL:"
	sed -n "s/^ *$2: *\([0-9.]*\).*/\1/p" "$1" | head -1
}
# rcode_pct FILE RCODE -> percentage of completed queries with RCODE
rcode_pct() {
	local line
	line=$(grep -m1 'Response codes:' "$1" || true)
	sed -n "s/.*$2 [0-9]* (\([0-9.]*\)%).*/\1/p" <<<"$line" | head -1 | grep . || echo 0
}

# measure ROUND SCENARIO SERVER: warm, max-QPS run, fixed-rate run; one TSV line.
measure() {
	local round=$1 scen=$2 srv=$3 pid=${PID[$3]} port=${PORT[$3]}
	local qf=$WORK/queries-$scen.txt want=${WANT_RCODE[$scen]}
	local base=$WORK/runs/r$round-$scen-$srv
	alive "$srv" || die "$srv exited; log: $(tail -20 "$WORK/logs/$srv.log")"
	local load1
	load1=$(cut -d' ' -f1 /proc/loadavg)

	((WARM > 0)) && dnsperf_run "$base.warm.txt" -p "$port" -d "$qf" -n "$WARM"

	# 1. unthrottled
	local c0 c1 s0 i0 st0 t0 s1 i1 st1 t1 max_idle max_util
	c0=$(proc_cpu_ticks "$pid")
	read -r s0 i0 st0 t0 < <(cpu_stat "$SERVER_CPU")
	dnsperf_run "$base.max.txt" -p "$port" -d "$qf" -l "$DURATION"
	read -r s1 i1 st1 t1 < <(cpu_stat "$SERVER_CPU")
	c1=$(proc_cpu_ticks "$pid")
	# Idle time left on the server CPU: if there is some, the server was not
	# the bottleneck (dnsperf was, or the server's own waiting).
	max_idle=$(awk -v b=$((s1 - s0 + i1 - i0 + st1 - st0)) -v t=$((t1 - t0)) 'BEGIN {printf "%.1f", t ? (t - b) * 100 / t : 0}')
	max_util=$(awk -v c=$((c1 - c0)) -v t=$((t1 - t0)) 'BEGIN {printf "%.1f", t ? c * 100 / t : 0}')
	local max_qps max_done max_lost max_cpu_us
	max_qps=$(stat_field "$base.max.txt" "Queries per second")
	max_done=$(stat_field "$base.max.txt" "Queries completed")
	max_lost=$(stat_field "$base.max.txt" "Queries lost")
	[[ -n $max_qps && -n $max_done ]] || die "dnsperf failed against $srv: $(tail -5 "$base.max.txt")"
	max_cpu_us=$(awk -v t=$((c1 - c0)) -v n="$max_done" -v hz="$CLK_TCK" 'BEGIN {printf "%.3f", n ? t / hz * 1e6 / n : 0}')

	# 2. fixed offered rate, every query's latency (-v)
	c0=$(proc_cpu_ticks "$pid")
	read -r s0 i0 st0 t0 < <(cpu_stat "$SERVER_CPU")
	dnsperf_run "$base.fixed.txt" -p "$port" -d "$qf" -l "$DURATION" -Q "$RATE" -v
	read -r s1 i1 st1 t1 < <(cpu_stat "$SERVER_CPU")
	c1=$(proc_cpu_ticks "$pid")
	local rss
	rss=$(proc_rss_kib "$pid")
	local sent ndone lost fix_cpu_us avg_ms
	sent=$(stat_field "$base.fixed.txt" "Queries sent")
	ndone=$(stat_field "$base.fixed.txt" "Queries completed")
	lost=$(stat_field "$base.fixed.txt" "Queries lost")
	avg_ms=$(stat_field "$base.fixed.txt" "Average Latency (s)")
	[[ -n $ndone && -n $sent ]] || die "dnsperf -Q failed against $srv: $(tail -5 "$base.fixed.txt")"
	fix_cpu_us=$(awk -v t=$((c1 - c0)) -v n="$ndone" -v hz="$CLK_TCK" 'BEGIN {printf "%.3f", n ? t / hz * 1e6 / n : 0}')
	# The server CPU's time during the fixed-rate run, in %: other processes
	# (task time not the server's), irq+softirq (includes the loopback
	# delivery of the server's own replies), steal.
	local other irq steal
	other=$(awk -v b=$((s1 - s0)) -v srv=$((c1 - c0)) -v t=$((t1 - t0)) 'BEGIN {v = t ? (b - srv) * 100 / t : 0; if (v < 0) v = 0; printf "%.1f", v}')
	irq=$(awk -v s=$((i1 - i0)) -v t=$((t1 - t0)) 'BEGIN {printf "%.1f", t ? s * 100 / t : 0}')
	steal=$(awk -v s=$((st1 - st0)) -v t=$((t1 - t0)) 'BEGIN {printf "%.1f", t ? s * 100 / t : 0}')
	# Latency percentiles (µs) from the per-query lines "> RCODE NAME TYPE SECONDS";
	# a query that timed out counts as 1 s, above any real answer.
	local pct
	pct=$(awk '$1 == ">" { if (NF >= 5 && $NF ~ /^[0-9.]+$/) print $NF * 1e6; else print 1e6 }' "$base.fixed.txt" |
		sort -g | awk '{ v[NR] = $1 } END {
			if (NR == 0) { print "0 0 0"; exit }
			i50 = int(NR * 0.50); if (i50 < NR * 0.50) i50++
			i99 = int(NR * 0.99); if (i99 < NR * 0.99) i99++
			i999 = int(NR * 0.999); if (i999 < NR * 0.999) i999++
			printf "%.0f %.0f %.0f\n", v[i50], v[i99], v[i999] }')
	local p50 p99 p999
	read -r p50 p99 p999 <<<"$pct"
	local ok_max ok_fix
	ok_max=$(rcode_pct "$base.max.txt" "$want")
	ok_fix=$(rcode_pct "$base.fixed.txt" "$want")
	((KEEP)) || rm -f "$base.warm.txt"
	# The per-query lines are large; keep only the summary unless --keep.
	((KEEP)) || sed -i '/^> /d' "$base.fixed.txt"
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
		"$round" "$scen" "$srv" "$max_qps" "$max_cpu_us" "$sent" "$ndone" "$lost" "$p50" "$p99" "$p999" \
		"$(awk -v a="$avg_ms" 'BEGIN {printf "%.0f", a * 1e6}')" "$fix_cpu_us" "$rss" "$other" "$steal" \
		"$(awk -v a="$ok_max" -v b="$ok_fix" 'BEGIN {print (a < b ? a : b)}')" "$load1" "$max_done" "$max_lost" "$irq" "$max_idle" "$max_util" >>"$RESULTS"
	log "$(printf 'r%s %-5s %-22s max %8.0f q/s (server %s%%, idle %s%%) | @%s: p99 %5s us, %6s us CPU/q, lost %s | RSS %6s KiB | cpu%s: others %s%%, irq %s%% | load %s' \
		"$round" "$scen" "$srv" "$max_qps" "$max_util" "$max_idle" "$RATE" "$p99" "$fix_cpu_us" "$lost" "$rss" "$SERVER_CPU" "$other" "$irq" "$load1")"
}

# --- report ------------------------------------------------------------------

version_of() {
	case $1 in
	nodedns*-base) echo "nodedns $NODEDNS_BASE_REV" ;;
	nodedns*) echo "nodedns $NODEDNS_REV" ;;
	coredns*) echo "CoreDNS $COREDNS_VERSION" ;;
	unbound) echo "Unbound $(unbound -V 2>/dev/null | sed -n 's/^Version //p')" ;;
	dnsmasq) echo "dnsmasq $(dnsmasq --version | sed -n 's/^Dnsmasq version \([^ ]*\).*/\1/p')" ;;
	esac
}
describe() {
	case $1 in
	nodedns) echo "\`--upstream\`, a cache if the tree has pkg/cache" ;;
	nodedns-base) echo "baseline, \`--upstream\`" ;;
	nodedns-k8s-base) echo "baseline, $(describe nodedns-k8s)" ;;
	coredns) echo "\`cache 30\` + \`forward\`" ;;
	unbound) echo "forward-zone \".\", 1 thread" ;;
	dnsmasq) echo "\`--cache-size=10000\`" ;;
	nodedns-k8s) [[ $NODEDNS_SOURCE == file ]] && echo "\`--zone-file\`" || echo "\`--kubeconfig\` (API server)" ;;
	nodedns-zonefile) echo "\`--zone-file\`" ;;
	coredns-k8s) echo "\`kubernetes\` (API server)" ;;
	coredns-k8s-cache) echo "\`kubernetes\` + \`cache 30\`" ;;
	esac
}

report() {
	local srv_meta="" s
	for s in "${HITS_SERVERS[@]}" "${ZONE_SERVERS[@]}"; do
		srv_meta+="$s|$(describe "$s");"
	done
	echo "## Results: ${RUN_DATE:-$(date -u '+%Y-%m-%d %H:%M UTC')}"
	echo
	local model hv
	model=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
	hv=$(lscpu 2>/dev/null | sed -n 's/^Hypervisor vendor: *//p' | head -1)
	echo "- Machine: $(nproc) CPUs, ${model:-unknown model}${hv:+, VM ($hv)}, kernel $(uname -r), Go $(go env GOVERSION)"
	echo "- nodedns $NODEDNS_REV${NODEDNS_BASE_REV:+ (baseline: nodedns $NODEDNS_BASE_REV)}, CoreDNS $COREDNS_VERSION, $(version_of unbound), $(version_of dnsmasq), dnsperf $(dnsperf -H 2>&1 | sed -n 's/^Version //p' | head -1)"
	echo "- Server on CPU $SERVER_CPU; dnsperf, the upstream and the API server on CPU $CLIENT_CPU; nice $NICE for the servers under test and dnsperf. $ROUNDS round(s), order alternated each round; each run ${DURATION} s after $WARM warm-up pass(es); \`dnsperf -q 100 -c $CLIENTS\`; fixed rate \`-Q $RATE\`."
	echo "- Load average (1, 5, 15 min) at start $LOAD_START, at end $LOAD_END; measuring took ${MEASURE_SECS} s."
	[[ -n $CHECK_NOTE ]] && echo "- $CHECK_NOTE"
	echo
	awk -F'\t' -v rate="$RATE" -v dur="$DURATION" -v cpu="$SERVER_CPU" -v scen_list="${SCEN_LIST[*]}" \
		-v hits="${HITS_SERVERS[*]}" -v zone="${ZONE_SERVERS[*]}" -v meta="$srv_meta" '
	function sort(a, n,   i, j, t) { for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j > 0 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t } }
	function med(a, n) { if (n == 0) return ""; sort(a, n); return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
	function mmin(a, n,   i, m) { m = a[1]; for (i = 2; i <= n; i++) if (a[i] < m) m = a[i]; return m }
	function mmax(a, n,   i, m) { m = a[1]; for (i = 2; i <= n; i++) if (a[i] > m) m = a[i]; return m }
	# median over rounds of column c for (scenario, server)
	function mcol(sc, sv, c,   r, n, a) { n = 0; for (r = 1; r <= R; r++) if ((sc, sv, r) in row) a[++n] = val[sc, sv, r, c]; return med(a, n) }
	# median over rounds of the per-round ratio server/reference
	function mratio(sc, sv, ref, c,   r, n, a) {
		n = 0
		for (r = 1; r <= R; r++) if ((sc, sv, r) in row && (sc, ref, r) in row && val[sc, ref, r, c] > 0) a[++n] = val[sc, sv, r, c] / val[sc, ref, r, c]
		return med(a, n)
	}
	function fmt_ratio(x) { return x == "" ? "–" : sprintf("%.2f×", x) }
	function fmt_k(x) { return sprintf("%.1fk", x / 1000) }
	{
		for (c = 1; c <= NF; c++) val[$2, $3, $1, c] = $c
		row[$2, $3, $1] = 1
		if ($1 > R) R = $1
		# sustained: answered >= 99% of the offered queries and the expected rcode
		if ($7 < 0.99 * rate * dur || $8 > $7 * 0.001) bad_rate[$2, $3] = 1
		if ($17 < 99) bad_rcode[$2, $3] = 1
		idle[$2, $3, ++nidle[$2, $3]] = $22
		other[++no] = $15; steal[++ns] = $16; load[++nl] = $18; irq[++ni] = $21
	}
	END {
		n = split(meta, m, ";"); for (i = 1; i <= n; i++) { p = index(m[i], "|"); if (p) desc[substr(m[i], 1, p - 1)] = substr(m[i], p + 1) }
		ns_ = split(scen_list, scens, " ")
		title["hits"] = "cache hits"; title["zone"] = "cluster-zone answers"; title["ndots"] = "ndots:5 storm (NXDOMAIN)"
		print "| scenario | server | max QPS | ×CoreDNS | CPU µs/query @max | ×CoreDNS | p99 µs @" rate "/s | ×CoreDNS | CPU µs/query @" rate "/s | ×CoreDNS | RSS MiB | ×CoreDNS |"
		print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for (i = 1; i <= ns_; i++) {
			sc = scens[i]
			k = split(sc == "hits" ? hits : zone, servers, " ")
			ref = sc == "hits" ? "coredns" : "coredns-k8s"
			for (j = 1; j <= k; j++) {
				sv = servers[j]
				flag = ((sc, sv) in bad_rate ? " †" : "") ((sc, sv) in bad_rcode ? " ‡" : "")
				delete tmp; for (q = 1; q <= nidle[sc, sv]; q++) tmp[q] = idle[sc, sv, q]
				qflag = med(tmp, nidle[sc, sv]) > 10 ? " §" : ""
				printf "| %s | %s (%s)%s | %s%s | %s | %.2f | %s | %d | %s | %.2f | %s | %.1f | %s |\n", title[sc], sv, desc[sv], flag,
					fmt_k(mcol(sc, sv, 4)), qflag, fmt_ratio(mratio(sc, sv, ref, 4)),
					mcol(sc, sv, 5), fmt_ratio(mratio(sc, sv, ref, 5)),
					mcol(sc, sv, 10), fmt_ratio(mratio(sc, sv, ref, 10)),
					mcol(sc, sv, 13), fmt_ratio(mratio(sc, sv, ref, 13)),
					mcol(sc, sv, 14) / 1024, fmt_ratio(mratio(sc, sv, ref, 14))
			}
		}
		print ""
		print "Medians over " R " round(s); ×CoreDNS is the median of the per-round ratios against CoreDNS in the same round"
		print "(hits: CoreDNS `cache`+`forward`; zone and ndots: CoreDNS `kubernetes`). Lower is better except for max QPS."
		print "CPU µs/query = server utime+stime (/proc/PID/stat) / queries answered: @max during the unthrottled run (1 / queries per"
		print "server CPU-second when the server is the bottleneck), @" rate "/s at the fixed offered rate (includes the per-wake-up cost)."
		print "§ the server CPU was over 10% idle during the unthrottled run (median): the limit was the load generator, not the server."
		print "† at the fixed rate, in some round, answered under 99% of " rate "/s × " dur " s or lost over 0.1%; ‡ under 99% of answers had the expected rcode."
		if (no) printf "Server CPU during the fixed-rate runs: other processes median %.1f%% (max %.1f%%), irq+softirq median %.1f%%, steal median %.1f%%; load average median %.2f (max %.2f).\n", med(other, no), mmax(other, no), med(irq, ni), med(steal, ns), med(load, nl), mmax(load, nl)
		print ""
		nb = 0
		for (i = 1; i <= ns_; i++) {
			sc = scens[i]; sv = sc == "hits" ? "nodedns" : "nodedns-k8s"
			if (!((sc, sv "-base", 1) in row)) continue
			if (!nb++) {
				print "### Against the baseline"
				print ""
				print "Median of the per-round ratios this tree / baseline (below 1: this tree is cheaper or faster)."
				print ""
				print "| scenario | max QPS | CPU µs/query @max | CPU µs/query @" rate "/s | p99 @" rate "/s |"
				print "|---|---:|---:|---:|---:|"
			}
			printf "| %s | %s | %s | %s | %s |\n", title[sc], fmt_ratio(mratio(sc, sv, sv "-base", 4)), fmt_ratio(mratio(sc, sv, sv "-base", 5)),
				fmt_ratio(mratio(sc, sv, sv "-base", 13)), fmt_ratio(mratio(sc, sv, sv "-base", 10))
		}
		if (nb) print ""
		print "### Targets (issue 3)"
		print ""
		for (i = 1; i <= ns_; i++) {
			sc = scens[i]; ref = sc == "hits" ? "coredns" : "coredns-k8s"
			sv = sc == "hits" ? "nodedns" : "nodedns-k8s"
			if (!((sc, sv, 1) in row)) continue
			goal = sc == "hits" ? 0.4 : 1 / 3
			x = mratio(sc, sv, ref, 13); xm = mratio(sc, sv, ref, 5)
			printf "- %s, CPU per query ≤ %s CoreDNS: %.2f× at %d/s (%.2f× unthrottled) → %s\n", title[sc], (sc == "hits" ? "0.4×" : "1/3×"), x, rate, xm,
				(x <= goal ? "met" : sprintf("missed: nodedns needs %.0f%% less CPU per query (%.2f× the allowed)", (1 - goal / x) * 100, x / goal))
			if (sc == "hits") {
				delete tmp; for (q = 1; q <= nidle[sc, sv]; q++) tmp[q] = idle[sc, sv, q]
				z = med(tmp, nidle[sc, sv])
				printf "- cache hits, max QPS limited by the load generator, not nodedns: %s (%.1fk q/s; CPU %d was %.0f%% idle, median)\n",
					(z > 10 ? "met" : "missed"), mcol(sc, sv, 4) / 1000, cpu, z
			}
			y = mratio(sc, sv, ref, 10)
			printf "- %s, p99 at %d/s ≤ 0.5× CoreDNS: %.2f× → %s\n", title[sc], rate, y,
				(y <= 0.5 ? "met" : sprintf("missed: nodedns p99 needs to drop %.0f%% (%.2f× the allowed)", (1 - 0.5 / y) * 100, y / 0.5))
		}
		print ""
		print "<details><summary>Every run</summary>"
		print ""
		print "| round | scenario | server | max QPS | server CPU % @max | idle % @max | CPU µs/q @max | sent @rate | lost | p50 µs | p99 µs | p99.9 µs | avg µs | CPU µs/q @rate | RSS KiB | others on server CPU % | irq % | steal % | expected rcode % | load1 |"
		print "|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
		for (r = 1; r <= R; r++) for (i = 1; i <= ns_; i++) {
			sc = scens[i]; k = split(sc == "hits" ? hits : zone, servers, " ")
			for (j = 1; j <= k; j++) {
				sv = servers[j]; if (!((sc, sv, r) in row)) continue
				printf "| %d | %s | %s | %.0f | %.1f | %.1f | %.2f | %d | %d | %d | %d | %d | %d | %.2f | %d | %.1f | %.1f | %.1f | %s | %s |\n", r, sc, sv,
					val[sc, sv, r, 4], val[sc, sv, r, 23], val[sc, sv, r, 22], val[sc, sv, r, 5], val[sc, sv, r, 6], val[sc, sv, r, 8], val[sc, sv, r, 9],
					val[sc, sv, r, 10], val[sc, sv, r, 11], val[sc, sv, r, 12], val[sc, sv, r, 13], val[sc, sv, r, 14],
					val[sc, sv, r, 15], val[sc, sv, r, 21], val[sc, sv, r, 16], val[sc, sv, r, 17], val[sc, sv, r, 18]
			}
		}
		print ""
		print "</details>"
	}' "$RESULTS"
}

# emit_report: the Markdown report on stdout, and with the configurations to --out.
emit_report() {
	local REPORT name f
	REPORT=$(report)
	# --out first: a closed stdout (| head) must not lose the file.
	if [[ -n $OUT ]]; then
		{
			printf '%s\n\n' "$REPORT"
			echo "<details><summary>Server command lines and configurations</summary>"
			echo
			for name in "${ORDER[@]}"; do
				echo "\`$name\`: \`$(sed "s|$WORK|\$WORK|g" "$WORK/logs/$name.cmd")\`"
				echo
			done
			for f in "$WORK"/conf/Corefile.* "$WORK/conf/unbound.conf"; do
				[[ -f $f ]] || continue
				echo "\`$(basename "$f")\`:"
				echo '```'
				sed "s|$WORK|\$WORK|g" "$f"
				echo '```'
			done
			echo
			echo "</details>"
		} >"$OUT"
		log "report written to $OUT"
	fi
	printf '%s\n' "$REPORT" || true
}

# --- setup -------------------------------------------------------------------

if [[ -n $REPORT_FROM ]]; then
	WORK=$(cd "$REPORT_FROM" && pwd) KEEP=1
	RESULTS=$WORK/results.tsv
	[[ -s $RESULTS && -f $WORK/state.sh ]] || die "--report-from: no results.tsv or state.sh in $WORK"
	# shellcheck disable=SC1091
	source "$WORK/state.sh"
	emit_report
	exit 0
fi


install_debs
build_coredns
if ((NEED_K8S)); then
	log "kube-apiserver and etcd (cached after the first build)"
	"$REPO/hack/testenv.sh" build >&2 || die "hack/testenv.sh build failed"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/nodedns-bench.XXXXXX")
mkdir -p "$WORK/logs" "$WORK/runs" "$WORK/conf"
RESULTS=$WORK/results.tsv
: >"$RESULTS"

# What is measured: HEAD, plus a fingerprint of uncommitted changes (read-only git).
NODEDNS_REV=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [[ -n $(cd "$REPO" && git --no-optional-locks status --porcelain 2>/dev/null | head -1) ]]; then
	NODEDNS_REV+="+dirty:$(cd "$REPO" && {
		git --no-optional-locks diff HEAD
		git --no-optional-locks ls-files -o --exclude-standard -z | xargs -0 -r sha256sum
	} 2>/dev/null | sha256sum | cut -c1-8)"
fi
log "building nodedns ($NODEDNS_REV) and bench/kubeload from $REPO"
(cd "$REPO" && go build -o "$WORK/nodedns" ./cmd/nodedns && go build -o "$WORK/kubeload" ./bench/kubeload) >&2 ||
	die "go build failed (the tree may be mid-edit)"
if [[ -d $BASELINE ]]; then
	NODEDNS_BASE_REV=$(cd "$BASELINE" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
	[[ -n $(cd "$BASELINE" && git --no-optional-locks status --porcelain 2>/dev/null | head -1) ]] && NODEDNS_BASE_REV+="+dirty"
	log "building the baseline nodedns ($NODEDNS_BASE_REV) from $BASELINE"
	(cd "$BASELINE" && go build -o "$WORK/nodedns-base" ./cmd/nodedns) >&2 || die "baseline: go build failed"
elif [[ -n $BASELINE ]]; then
	NODEDNS_BASE_REV="binary $(basename "$BASELINE") ($(sha256sum "$BASELINE" | cut -c1-8))"
	cp "$BASELINE" "$WORK/nodedns-base"
fi

# Upstream zone: NAMES A records, TTL 3600.
UP_ADDR=127.0.0.2
{
	echo '$ORIGIN bench.example.'
	echo '$TTL 3600'
	echo '@ IN SOA ns.bench.example. hostmaster.bench.example. 1 7200 3600 1209600 300'
	echo '@ IN NS ns.bench.example.'
	echo "ns IN A $UP_ADDR"
	awk -v n="$NAMES" 'BEGIN { for (i = 1; i <= n; i++) printf "n%04d IN A 10.1.%d.%d\n", i, int(i / 250), i % 250 + 1 }'
} >"$WORK/conf/bench.example.zone"
awk -v n="$NAMES" 'BEGIN { for (i = 1; i <= n; i++) printf "n%04d.bench.example A\n", i }' >"$WORK/queries-hits.txt"
# The search list of a Pod in namespace default, for every name.
awk -v n="$NAMES" 'BEGIN { for (i = 1; i <= n; i++) {
	printf "n%04d.bench.example.default.svc.cluster.local A\n", i
	printf "n%04d.bench.example.svc.cluster.local A\n", i
	printf "n%04d.bench.example.cluster.local A\n", i } }' >"$WORK/queries-ndots.txt"
"$WORK/kubeload" -no-api -services "$SERVICES" -zone-out "$WORK/conf/cluster-zone.yaml" -queries-out "$WORK/queries-zone.txt" ||
	die "kubeload could not write the zone file"
cp "$REPO/examples/zone.yaml" "$WORK/conf/example-zone.yaml"
declare -A WANT_RCODE=([hits]=NOERROR [zone]=NOERROR [ndots]=NXDOMAIN)

PORT[upstream]=$(pick_port)
cat >"$WORK/conf/Corefile.upstream" <<EOF
bench.example:${PORT[upstream]} {
    bind $UP_ADDR
    file $WORK/conf/bench.example.zone
}
EOF

# Flags the binary may or may not have yet (the tree evolves): with
# upgrade handoff, every instance would share /run/nodedns/handoff.sock with
# each other and with any other nodedns on the machine; turn it off.
nodedns_extra() { # BIN -> flags for it, one a line
	if "$1" -h 2>&1 | grep -q -- '-handoff-socket'; then echo --handoff-socket=; fi
}

# nodedns NAME ZONE-FILE|--kubeconfig=PATH [BIN]: a nodedns on its own ports.
start_nodedns() {
	local name=$1 src=$2 bin=${3:-$WORK/nodedns} extra
	mapfile -t extra < <(nodedns_extra "$bin")
	PORT[$name]=$(pick_port)
	local srcflag=(--zone-file "$src")
	[[ $src == --kubeconfig=* ]] && srcflag=("$src")
	# shellcheck disable=SC2086
	start "$name" "$SERVER_CPU" "$bin" "${srcflag[@]}" "${extra[@]}" \
		--listen "127.0.0.1:${PORT[$name]}" --upstream "$UP_ADDR:${PORT[upstream]}" --resolv-conf /dev/null \
		--setup-interface=false --setup-rules=false \
		--health-listen "127.0.0.1:$(pick_port)" --metrics-listen "127.0.0.1:$(pick_port)" \
		--shutdown-grace 0s --log-level warn ${NODEDNS_BENCH_ARGS:-}
}

log "starting the upstream (CoreDNS file plugin on $UP_ADDR:${PORT[upstream]}, CPU $CLIENT_CPU)"
start upstream "$CLIENT_CPU" "$COREDNS_BIN" -conf "$WORK/conf/Corefile.upstream" -quiet

if ((NEED_K8S)); then
	log "starting kube-apiserver + etcd (CPU $CLIENT_CPU) and loading $SERVICES Services"
	start kubeload "$CLIENT_CPU" "$WORK/kubeload" -services "$SERVICES" -dir "$WORK/kubeenv" -ready-file "$WORK/kube.env"
fi

HITS_SERVERS=() ZONE_SERVERS=()
if ((DO_HITS)); then
	start_nodedns nodedns "$WORK/conf/example-zone.yaml"
	HITS_SERVERS=(nodedns)
	if [[ -n $BASELINE ]]; then
		start_nodedns nodedns-base "$WORK/conf/example-zone.yaml" "$WORK/nodedns-base"
		HITS_SERVERS+=(nodedns-base)
	fi

	PORT[coredns]=$(pick_port)
	cat >"$WORK/conf/Corefile.cache" <<EOF
.:${PORT[coredns]} {
    bind 127.0.0.1
    cache 30
    forward . $UP_ADDR:${PORT[upstream]}
}
EOF
	start coredns "$SERVER_CPU" "$COREDNS_BIN" -conf "$WORK/conf/Corefile.cache" -quiet

	PORT[unbound]=$(pick_port)
	mkdir -p "$WORK/unbound"
	cat >"$WORK/conf/unbound.conf" <<EOF
server:
    verbosity: 0
    num-threads: 1
    interface: 127.0.0.1
    port: ${PORT[unbound]}
    do-ip6: no
    access-control: 127.0.0.0/8 allow
    do-not-query-localhost: no
    chroot: ""
    username: ""
    directory: "$WORK/unbound"
    pidfile: "$WORK/unbound/unbound.pid"
    use-syslog: no
    logfile: ""
    module-config: "iterator"
    cache-max-ttl: 30
    qname-minimisation: no
remote-control:
    control-enable: no
forward-zone:
    name: "."
    forward-addr: $UP_ADDR@${PORT[upstream]}
EOF
	HITS_SERVERS+=(coredns)
	if ! skipped unbound; then
		unbound-checkconf "$WORK/conf/unbound.conf" >&2 || die "unbound.conf rejected"
		start unbound "$SERVER_CPU" unbound -d -c "$WORK/conf/unbound.conf"
		HITS_SERVERS+=(unbound)
	fi

	if ! skipped dnsmasq; then
		PORT[dnsmasq]=$(pick_port)
		start dnsmasq "$SERVER_CPU" dnsmasq --keep-in-foreground --conf-file=/dev/null --pid-file= \
			--no-resolv --no-hosts --bind-interfaces --listen-address=127.0.0.1 --port="${PORT[dnsmasq]}" \
			--server="$UP_ADDR#${PORT[upstream]}" --cache-size=10000 --max-cache-ttl=30
		HITS_SERVERS+=(dnsmasq)
	fi
fi

if ((NEED_K8S)); then
	for ((i = 0; i < 600; i++)); do
		[[ -s $WORK/kube.env ]] && break
		alive kubeload || die "kubeload exited: $(tail -30 "$WORK/logs/kubeload.log")"
		sleep 0.2
	done
	[[ -s $WORK/kube.env ]] || die "API server not loaded after 120 s: $(tail -30 "$WORK/logs/kubeload.log")"
	DNS_KUBECONFIG=$(sed -n 's/^DNS_KUBECONFIG=//p' "$WORK/kube.env")
	cat "$WORK/logs/kubeload.log" >&2

	k8s_corefile() { # PORT [cache]
		echo "cluster.local:$1 {"
		echo "    bind 127.0.0.1"
		echo "    kubernetes cluster.local {"
		echo "        kubeconfig $DNS_KUBECONFIG e2e"
		echo "        pods insecure"
		echo "    }"
		[[ ${2:-} == cache ]] && echo "    cache 30"
		echo "}"
	}
	case $NODEDNS_SOURCE in
	file) k8s_src=$WORK/conf/cluster-zone.yaml ;;
	*) k8s_src="--kubeconfig=$DNS_KUBECONFIG" ;;
	esac
	start_nodedns nodedns-k8s "$k8s_src"
	[[ -n $BASELINE ]] && start_nodedns nodedns-k8s-base "$k8s_src" "$WORK/nodedns-base"
	[[ $NODEDNS_SOURCE == both ]] && start_nodedns nodedns-zonefile "$WORK/conf/cluster-zone.yaml"
	# The zone-file instance is always started: it proves the zone file and
	# the API server hold the same answers (measured only with "both" or "file").
	[[ -z ${PID[nodedns-zonefile]:-} && $NODEDNS_SOURCE == api ]] &&
		start_nodedns nodedns-zonefile-check "$WORK/conf/cluster-zone.yaml"
	PORT[coredns-k8s]=$(pick_port)
	k8s_corefile "${PORT[coredns-k8s]}" >"$WORK/conf/Corefile.k8s"
	start coredns-k8s "$SERVER_CPU" "$COREDNS_BIN" -conf "$WORK/conf/Corefile.k8s" -quiet
	ZONE_SERVERS=(nodedns-k8s)
	[[ -n $BASELINE ]] && ZONE_SERVERS+=(nodedns-k8s-base)
	[[ $NODEDNS_SOURCE == both ]] && ZONE_SERVERS+=(nodedns-zonefile)
	ZONE_SERVERS+=(coredns-k8s)
	if ((K8S_CACHE)); then
		PORT[coredns-k8s-cache]=$(pick_port)
		k8s_corefile "${PORT[coredns-k8s-cache]}" cache >"$WORK/conf/Corefile.k8s-cache"
		start coredns-k8s-cache "$SERVER_CPU" "$COREDNS_BIN" -conf "$WORK/conf/Corefile.k8s-cache" -quiet
		ZONE_SERVERS+=(coredns-k8s-cache)
	fi
fi

# --- readiness and answer checks ---------------------------------------------

log "waiting for every server to answer"
PROBE_NAME=n0001.bench.example
PROBE_A=$(awk '$1 == "n0001" {print $4}' "$WORK/conf/bench.example.zone")
for srv in "${HITS_SERVERS[@]}"; do
	wait_answer "$PROBE_NAME" "$srv" NOERROR
	a=$(answers "$PROBE_NAME" "${PORT[$srv]}")
	[[ $a == *"A $PROBE_A"* ]] || die "$srv answered $PROBE_NAME with '$a', want A $PROBE_A"
done
CHECK_NAMES=(
	"svc-0001.bench.svc.cluster.local A"
	"$(printf 'svc-%04d' "$SERVICES").bench.svc.cluster.local A"
	"kubernetes.default.svc.cluster.local A"
	"_http._tcp.svc-0001.bench.svc.cluster.local SRV"
	"n0001.bench.example.default.svc.cluster.local A"
	"n0001.bench.example.svc.cluster.local A"
	"n0001.bench.example.cluster.local A"
)
((SERVICES >= 10)) && CHECK_NAMES+=("svc-0010.bench.svc.cluster.local A")
CHECK_NOTE=""
if ((NEED_K8S)); then
	k8s_check=("${ZONE_SERVERS[@]}")
	[[ -n ${PID[nodedns-zonefile-check]:-} ]] && k8s_check+=(nodedns-zonefile-check)
	for srv in "${k8s_check[@]}"; do
		wait_answer svc-0001.bench.svc.cluster.local "$srv" NOERROR
	done
	mismatch=0
	for q in "${CHECK_NAMES[@]}"; do
		read -r qn qt <<<"$q"
		ref=$(answers "$qn" "${PORT[coredns-k8s]}" "$qt")
		for srv in "${k8s_check[@]}"; do
			a=$(answers "$qn" "${PORT[$srv]}" "$qt")
			if [[ $a != "$ref" ]]; then
				log "WARNING: $qn $qt: $srv says '$a', coredns-k8s says '$ref'"
				mismatch=1
			fi
		done
	done
	if ((mismatch)); then
		CHECK_NOTE="**Warning:** the servers' answers differ for some check names (see the log); the comparison is not like for like."
	else
		CHECK_NOTE="Answer check: ${#CHECK_NAMES[@]} names (ClusterIP, headless, SRV, the 3 search suffixes) give the same rcode and records from $(IFS=,; echo "${k8s_check[*]}" | sed 's/,/, /g')."
	fi
	log "${CHECK_NOTE//\*/}"
	# Not measured: stop it now so it does not sit on the server CPU.
	if [[ -n ${PID[nodedns-zonefile-check]:-} ]]; then
		kill -TERM "${PID[nodedns-zonefile-check]}" 2>/dev/null || true
		wait "${PID[nodedns-zonefile-check]}" 2>/dev/null || true
	fi
fi

# --- interleaved rounds --------------------------------------------------------

SCEN_LIST=()
((DO_HITS)) && SCEN_LIST+=(hits)
((DO_ZONE)) && SCEN_LIST+=(zone)
((DO_NDOTS)) && SCEN_LIST+=(ndots)
servers_of() { if [[ $1 == hits ]]; then echo "${HITS_SERVERS[@]}"; else echo "${ZONE_SERVERS[@]}"; fi; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
RUN_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
MEASURE_START=$SECONDS
log "measuring: $ROUNDS round(s), ${DURATION}s per run, fixed rate $RATE q/s, server on CPU $SERVER_CPU, dnsperf on CPU $CLIENT_CPU"
for ((r = 1; r <= ROUNDS; r++)); do
	for scen in "${SCEN_LIST[@]}"; do
		read -ra list <<<"$(servers_of "$scen")"
		# A B, B A, A B, ...: alternate the order so drift within a round cancels.
		if ((r % 2 == 0)); then
			rev=()
			for ((i = ${#list[@]} - 1; i >= 0; i--)); do rev+=("${list[i]}"); done
			list=("${rev[@]}")
		fi
		for srv in "${list[@]}"; do
			measure "$r" "$scen" "$srv"
		done
	done
done
MEASURE_SECS=$((SECONDS - MEASURE_START))
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# Everything the report needs, so --report-from can redo it from a kept run.
declare -p SCEN_LIST HITS_SERVERS ZONE_SERVERS RATE DURATION ROUNDS WARM CLIENTS NICE SERVER_CPU CLIENT_CPU \
	LOAD_START LOAD_END MEASURE_SECS CHECK_NOTE NODEDNS_REV NODEDNS_BASE_REV NODEDNS_SOURCE ORDER RUN_DATE >"$WORK/state.sh"
emit_report
log "done in $((SECONDS - START_TIME)) s (measuring ${MEASURE_SECS} s)"

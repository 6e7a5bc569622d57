#!/usr/bin/env bash
# Installs the Debian packages the tests need, only those missing.
# Safe to rerun; needs no stdin (CI runs it with CI=true).
set -euo pipefail

# The one list: "package" or "package:command" (the command is a quick
# extra check that the package's tool is really there). Add new needs here.
DEBS=(
	dnsutils:dig
	iproute2:ip
	iptables:iptables
	nftables:nft
	conntrack:conntrack
	openssl:openssl
	procps:pkill
	kmod:modprobe
	util-linux:setsid
	dnsperf:dnsperf
)

installed() {
	[[ $(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) == "install ok installed" ]]
}

missing=()
for entry in "${DEBS[@]}"; do
	pkg=${entry%%:*}
	cmd=${entry#*:}
	[[ $cmd == "$entry" ]] && cmd=
	if ! installed "$pkg" || { [[ -n $cmd ]] && ! PATH=$PATH:/usr/sbin:/sbin command -v "$cmd" >/dev/null; }; then
		missing+=("$pkg")
	fi
done

if ((${#missing[@]} == 0)); then
	echo "deps: all ${#DEBS[@]} packages present"
	exit 0
fi

SUDO=
if ((EUID != 0)); then
	command -v sudo >/dev/null || { echo "deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
	SUDO="sudo -n"
fi

echo "deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
# Wait for another apt run (a colleague, CI) instead of failing on its lock.
apt_opts=(-o DPkg::Lock::Timeout=300 -o Acquire::Retries=3)
$SUDO apt-get "${apt_opts[@]}" update -q </dev/null
$SUDO apt-get "${apt_opts[@]}" install -y -q --no-install-recommends "${missing[@]}" </dev/null
echo "deps: done"

#!/usr/bin/env bash
# Makes sure the Debian packages the tests need (test/peers/debian-packages.txt) are installed.
#
#   test/peers/debian-peers.sh            install what is missing: as root, or through
#                                         non-interactive sudo; otherwise stop (status 1)
#                                         naming the one command that does it
#   test/peers/debian-peers.sh --dry-run  say what is missing and what would run; change nothing
#   test/peers/debian-peers.sh --check    change nothing; status 1 if anything is missing
#
# Nothing is done when everything is installed (one dpkg-query, no apt-get update).
# `npm test` runs this first ("pretest"), and .ci/run does too.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
list="$here/debian-packages.txt"
self="test/peers/debian-peers.sh"
mode=install
case "${1-}" in
  "") ;;
  --dry-run) mode=dry-run ;;
  --check) mode=check ;;
  *) echo "usage: $self [--dry-run | --check]" >&2; exit 2 ;;
esac

mapfile -t pkgs < <(sed -e 's/#.*//' "$list" | tr -s ' \t' '\n\n' | grep -v '^$')
[ ${#pkgs[@]} -gt 0 ] || { echo "test peers: $list lists no packages" >&2; exit 2; }

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "test peers: this is not a Debian system (no dpkg-query); the tests need these Debian packages or their equivalents:" >&2
  echo "  ${pkgs[*]}" >&2
  exit 1
fi

missing_packages() {
  # One query for all (an unknown name only adds a line on stderr), one pass over its answer.
  { dpkg-query -W -f='${Package} ${Status}\n' "${pkgs[@]}" 2>/dev/null || true; } |
    awk -v want="${pkgs[*]}" '$2 " " $3 " " $4 == "install ok installed" { ok[$1] = 1 }
      END { n = split(want, w, " "); for (i = 1; i <= n; i++) if (!(w[i] in ok)) print w[i] }'
}

mapfile -t missing < <(missing_packages)
[ ${#missing[@]} -eq 0 ] && exit 0

echo "test peers: missing Debian packages: ${missing[*]}" >&2
if [ "$mode" = check ]; then
  echo "test peers: \`npm test\` installs them (or run: sudo $self)" >&2
  exit 1
fi
install=(apt-get install -y -qq --no-install-recommends "${missing[@]}")

if [ "$(id -u)" = 0 ]; then
  as=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true >/dev/null 2>&1; then
  as=(sudo -n)
else
  echo "test peers: cannot install them here (not root, and sudo is missing or asks for a password)." >&2
  echo "test peers: run this once, then the tests again:" >&2
  echo "  sudo $self" >&2
  exit 1
fi

if [ "$mode" = dry-run ]; then
  echo "test peers: would run: ${as[*]+${as[*]} }apt-get update -qq" >&2
  echo "test peers: would run: ${as[*]+${as[*]} }${install[*]}" >&2
  exit 0
fi

echo "test peers: installing them (apt-get)…" >&2
"${as[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
"${as[@]}" env DEBIAN_FRONTEND=noninteractive "${install[@]}"

mapfile -t still < <(missing_packages)
if [ ${#still[@]} -gt 0 ]; then
  echo "test peers: still missing after apt-get install: ${still[*]}" >&2
  exit 1
fi
echo "test peers: installed ${missing[*]}" >&2

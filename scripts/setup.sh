#!/usr/bin/env bash
# Everything vagonfs needs on a fresh Debian/Ubuntu machine; safe to run again.
# System packages (FUSE 3 and its headers for pyfuse3, rsync, gio for the file
# manager checks), a virtualenv in .venv, and the package with its test and
# emulator extras (the demo and the tests run the emulator).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in fuse3 libfuse3-dev pkg-config rsync libglib2.0-bin; do
    dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing system packages: ${need[*]}"
    sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
fi
stamp=.venv/.vagonfs-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "setup: installing vagonfs with its test and emulator extras into .venv"
    .venv/bin/pip install -q --disable-pip-version-check -e '.[test,emulator]'
    touch "$stamp"
fi
# mount(8) runs helpers with PATH reset to the system directories: put the
# command where `mount -t fuse.vagonfs` and fstab find it.
if [ "$(id -u)" -eq 0 ] && [ ! -e /usr/local/bin/vagonfs ]; then
    ln -sf "$PWD/.venv/bin/vagonfs" /usr/local/bin/vagonfs
fi

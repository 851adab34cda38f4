#!/usr/bin/env bash
# The demo: installs what vagonfs needs, then mounts the emulator's demo data
# (Vagon, tenant and Shannon) under ./vagonfs-demo/mnt until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/vagonfs demo "${1:-vagonfs-demo}"

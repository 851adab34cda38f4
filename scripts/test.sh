#!/usr/bin/env bash
# The whole test suite, after the set-up it needs. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# The types first (mypy, set up in pyproject.toml's [tool.mypy]): a type error
# fails the run before any test starts.
if types=$(.venv/bin/python -m mypy 2>&1); then
    echo "types: ${types}"
else
    printf '%s\n' "$types" | sed '$d'
    echo "types: ${types##*$'\n'}; no test was run"
    exit 1
fi
# Then the import contracts (import-linter, set up in pyproject.toml's
# [tool.importlinter]: layers, and what the commands may load): a broken one
# fails the run before any test starts, naming the import that breaks it.
if contracts=$(.venv/bin/lint-imports --no-cache 2>&1); then
    echo "imports: $(grep -m1 '^Contracts:' <<<"$contracts")"
else
    printf '%s\n' "$contracts" | sed -n '/^Broken contracts/,$p'
    echo "imports: $(grep -m1 '^Contracts:' <<<"$contracts" || echo 'lint-imports failed') no test was run"
    exit 1
fi
exec .venv/bin/python -m pytest -p no:cacheprovider "$@"

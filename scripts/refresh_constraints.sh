#!/usr/bin/env bash
# Refresh constraints.txt: install the newest versions pyproject.toml allows into a fresh venv,
# run the test suite there, and only if it passes write that venv's versions to constraints.txt.
#   scripts/refresh_constraints.sh            # then review `git diff constraints.txt` and commit
# Both README commands install with `-c constraints.txt`, so a fresh clone gets the versions the
# suite last passed on, not whatever was released since.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)/venv
python3.11 -m venv "$venv"
"$venv/bin/pip" install -q -e ".[all,cpu,test]"
"$venv/bin/python" -m pytest -q -p no:cacheprovider
{
  echo "# Versions the test suite passed on (scripts/refresh_constraints.sh wrote this on $(date -u +%F))."
  echo "# Used by both README commands: pip install -c constraints.txt -e \".[...]\"."
  "$venv/bin/pip" freeze --exclude-editable | grep -v '^#' | sed -E 's/\+cpu$//' | sort -f
} > constraints.txt.new
mv constraints.txt.new constraints.txt
rm -rf "$(dirname "$venv")"
echo "constraints.txt refreshed; review git diff constraints.txt"

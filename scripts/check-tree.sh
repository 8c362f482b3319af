#!/usr/bin/env bash
# Checks that the committed tree holds nothing machine-specific: no symbolic link whose target is
# an absolute path (a link to one machine's folder breaks every other checkout). Run by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r -d '' entry; do
  path=${entry#*$'\t'}
  target=$(git cat-file blob "$(echo "$entry" | awk '{print $2}')")
  case "$target" in
    /*) echo "check-tree: $path is a symbolic link to the absolute path $target" >&2; bad=1 ;;
  esac
done < <(git ls-files -s -z | tr '\0' '\n' | awk '$1 == "120000"' | tr '\n' '\0')
exit $bad

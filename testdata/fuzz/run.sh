#!/usr/bin/env bash
# Runs every Go fuzz target in the module for FUZZTIME each (go test runs
# one target per invocation). `make test` runs them briefly so a regression
# on a seed or a quick find fails the build; `make fuzz` runs them longer.
# A crasher is saved by go test under the package's testdata/fuzz/<target>/
# and from then on replays in every plain `go test`.
set -euo pipefail
cd "$(dirname "$0")/../.."
FUZZTIME=${FUZZTIME:-3s}
GO=${GO:-go}
only=${FUZZ:-}
n=0
failed=()
while IFS= read -r dir; do
	pkg="./$dir"
	for target in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | sed 's/^func //' | sort -u); do
		if [[ -n "$only" && "$target" != *"$only"* ]]; then
			continue
		fi
		n=$((n + 1))
		echo "fuzz: $pkg $target for $FUZZTIME"
		if ! "$GO" test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg" > /tmp/callgate-fuzz.$$ 2>&1; then
			cat /tmp/callgate-fuzz.$$
			failed+=("$pkg $target")
		fi
	done
done < <(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sed 's|^\./||' | sort -u)
rm -f /tmp/callgate-fuzz.$$
if ((${#failed[@]})); then
	echo "fuzz: ${#failed[@]} of $n targets failed:"
	printf '  %s\n' "${failed[@]}"
	exit 1
fi
echo "fuzz: $n targets ran $FUZZTIME each, none failed"

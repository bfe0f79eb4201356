#!/usr/bin/env bash
# `sam validate --lint` and `sam validate` of template.yaml for every value of the parameters
# that change its shape: SnapStart (None, PublishedVersions) x Architecture (arm64, x86_64).
# `sam validate` takes no parameter values, so each pair is validated as a copy of the
# template whose defaults are that pair (beside template.yaml: its CodeUri paths hold; removed
# on exit).  Usage: bash infra/validate.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
variant=""
trap 'rm -f "$variant"' EXIT

# template.yaml with parameter $1's Default set to $2.
with_default() {
    awk -v name="$1" -v value="$2" '
        /^  [A-Za-z0-9]+:$/ { inside = ($0 == "  " name ":") }
        inside && /^    Default:/ { sub(/Default: .*/, "Default: " value); inside = 0 }
        { print }'
}

for snapstart in None PublishedVersions; do
    for architecture in arm64 x86_64; do
        variant="$ROOT/.template.$snapstart.$architecture.yaml"
        with_default SnapStart "$snapstart" < "$ROOT/template.yaml" | with_default Architecture "$architecture" > "$variant"
        grep -q "Default: $snapstart" "$variant" && grep -q "Default: $architecture" "$variant"
        echo "== SnapStart=$snapstart Architecture=$architecture"
        "$ROOT/infra/sam.sh" validate --lint --template-file "$variant"
        "$ROOT/infra/sam.sh" validate --region us-east-1 --template-file "$variant"
        rm -f "$variant"
    done
done

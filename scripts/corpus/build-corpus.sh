#!/usr/bin/env bash
# Builds the Debian training corpus: build-corpus.sh OUT_DIR
#
# Downloads the packages pinned in packages.tsv (apt-get download PACKAGE=VERSION), checks each .deb's SHA-256,
# unpacks them with dpkg-deb -x into a temporary folder (nothing is installed), converts the chosen files to plain
# text (corpus.py), splits them by document into train / heldout / calibration, adds the bundled OLMoE samples of
# calibration/ unchanged, and records licences and a manifest. Same packages.tsv, same tools → byte-identical OUT_DIR.
# See scripts/corpus/README.md.
#
# Environment: CORPUS_DEB_CACHE  folder for the downloaded .deb files (default ~/.cache/moe-compress-corpus);
#              a file already there with the right SHA-256 is not downloaded again.
set -euo pipefail

die() { echo "build-corpus.sh: $*" >&2; exit 1; }

[[ $# -eq 1 ]] || die "usage: build-corpus.sh OUT_DIR"
out=$1
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
packages=$here/packages.tsv
cache=${CORPUS_DEB_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/moe-compress-corpus}

if [[ -e $out ]] && [[ -n $(ls -A "$out" 2>/dev/null) ]]; then
    die "$out exists and is not empty; remove it or name a new folder"
fi
for tool in apt-get dpkg-deb sha256sum groff python3; do
    command -v "$tool" >/dev/null || die "'$tool' not found (groff: apt-get install groff-base)"
done
[[ -f $packages ]] || die "$packages not found"
[[ -d $repo/calibration/train && -d $repo/calibration/heldout ]] || die "$repo/calibration/{train,heldout} not found"

started=$(date +%s)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$cache" "$work/x" "$work/out/licences"
export LC_ALL=C.UTF-8 TZ=UTC

# A .deb for each row of packages.tsv, from the cache or the apt mirror; the SHA-256 must match.
fetch() {
    local pkg=$1 version=$2 arch=$3 sha=$4 pool=$5
    local deb="$cache/${pkg}_${version//:/%3a}_${arch}.deb"
    if [[ -f $deb ]] && [[ $(sha256sum "$deb" | cut -d' ' -f1) == "$sha" ]]; then
        echo "$deb"
        return
    fi
    local spec="$pkg=$version" dl="$work/dl"
    [[ $arch == all ]] || spec="$pkg:$arch=$version"
    rm -rf "$dl" && mkdir -p "$dl"
    if ! (cd "$dl" && apt-get download -q "$spec" >/dev/null 2>"$work/apt.err"); then
        die "apt-get download $spec failed ($(grep -m1 -E '^E:' "$work/apt.err" || true)); run apt-get update, or if the version has left the mirror save $pool from snapshot.debian.org as $deb"
    fi
    local got
    got=$(find "$dl" -name '*.deb' | head -n 1)
    [[ -n $got ]] || die "apt-get download $spec produced no .deb"
    local actual
    actual=$(sha256sum "$got" | cut -d' ' -f1)
    [[ $actual == "$sha" ]] || die "$pkg $version: SHA-256 of the downloaded .deb is $actual, packages.tsv says $sha"
    mv "$got" "$deb"
    echo "$deb"
}

while IFS=$'\t' read -r pkg version arch sha _bytes pool _copyright_from _licence; do
    [[ -z $pkg || $pkg == \#* ]] && continue
    deb=$(fetch "$pkg" "$version" "$arch" "$sha" "$pool")
    echo "build-corpus.sh: $pkg $version ($(basename "$deb"))" >&2
    mkdir -p "$work/x/$pkg"
    dpkg-deb -x "$deb" "$work/x/$pkg"
done < "$packages"

# Licences: each package's copyright file (packages whose doc folder is a link to a sibling of the same source
# package take the sibling's, named in the copyright_from column).
while IFS=$'\t' read -r pkg _version _arch _sha _bytes _pool copyright_from _licence; do
    [[ -z $pkg || $pkg == \#* ]] && continue
    copyright="$work/x/$copyright_from/usr/share/doc/$copyright_from/copyright"
    [[ -f $copyright && ! -L $copyright ]] || die "$pkg: no copyright file at usr/share/doc/$copyright_from/copyright of $copyright_from"
    cp "$copyright" "$work/out/licences/$pkg.copyright"
done < "$packages"
cp "$repo/calibration/LICENSE-OLMoE-Apache-2.0.txt" "$work/out/licences/olmoe-Apache-2.0.txt"
cp "$repo/calibration/README.md" "$work/out/licences/olmoe-calibration-README.md"
cp "$packages" "$work/out/packages.tsv"

nice -n 10 python3 "$here/corpus.py" "$work/x" "$repo/calibration" "$work/out"

{
    printf 'groff\t%s\n' "$(groff --version | head -n 1)"
    printf 'python3\t%s\n' "$(python3 --version 2>&1)"
} > "$work/out/TOOLS.tsv"

mkdir -p "$out"
cp -r "$work/out/." "$out/"
echo "build-corpus.sh: wrote $out in $(( $(date +%s) - started )) s" >&2

#!/usr/bin/env bash
# Prepare an ONNX Runtime tree for the C++ example: ONNXRUNTIME_ROOT/{include,lib}.
#
# Why this way:
#   * headers come from Debian's libonnxruntime-dev of the *trixie* suite (headers only;
#     bookworm's libc is too old for trixie's library). They are fetched with
#     `apt-get download` through a throw-away apt configuration in a temporary folder that
#     reuses the URIs of this machine's /etc/apt/sources.list.d/debian.sources, then
#     unpacked with `dpkg-deb -x`. The system's apt configuration and package state are
#     never touched, and no root is needed.
#   * the library is the libonnxruntime.so.<ver> inside the PyPI onnxruntime wheel, i.e.
#     the very library the Python SDK uses, so both run the same kernels. lib/ only holds
#     symlinks to it (libonnxruntime.so for the linker, libonnxruntime.so.1 = its SONAME).
#   * headers must not be newer than the library (the C API is backward compatible only);
#     this is checked here, and again by the program at run time.
#
# The result has the layout of the official ONNX Runtime release tarball, so CMake needs
# nothing but -DONNXRUNTIME_ROOT=<dir> either way.
#
# Usage: setup_ort.sh [--python PY] [--dest DIR] [--force]
#   --python PY  interpreter whose onnxruntime wheel provides the library
#                (default: $PYTHON, else <repo>/.venv/bin/python, else python3)
#   --dest DIR   output folder (default: cpp_example/_ort next to this script)
#   --force      fetch the headers again even if DIR already has them
# Environment: ORT_HEADERS_SUITE (default trixie), ORT_HEADERS_PACKAGE (default
#   libonnxruntime-dev; may carry =VERSION to pin a Debian version).
# Prints the ONNXRUNTIME_ROOT to use on its last line.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
dest="$here/_ort"
force=0
py="${PYTHON:-}"
suite="${ORT_HEADERS_SUITE:-trixie}"
package="${ORT_HEADERS_PACKAGE:-libonnxruntime-dev}"

die() { echo "setup_ort.sh: error: $*" >&2; exit 2; }
info() { echo "setup_ort.sh: $*" >&2; }

while [ $# -gt 0 ]; do
    case "$1" in
        --python) py="$2"; shift 2 ;;
        --dest) dest="$2"; shift 2 ;;
        --force) force=1; shift ;;
        -h|--help) sed -n '2,30p' "${BASH_SOURCE[0]}"; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
if [ -z "$py" ]; then
    if [ -x "$repo/.venv/bin/python" ]; then py="$repo/.venv/bin/python"; else py="python3"; fi
fi

# ---- 1. the library, from the onnxruntime wheel -------------------------------------------
capi="$("$py" -c 'import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), "capi"))' 2>/dev/null)" \
    || die "$py cannot import onnxruntime (pip install onnxruntime, or pass --python)"
lib="$(find "$capi" -maxdepth 1 -name 'libonnxruntime.so.[0-9]*.[0-9]*' | sort | tail -n 1)"
[ -n "$lib" ] || die "no libonnxruntime.so.<version> in $capi"
lib_version="${lib##*/libonnxruntime.so.}"          # e.g. 1.32.0
lib_minor="$(echo "$lib_version" | cut -d. -f2)"
soname="$(objdump -p "$lib" 2>/dev/null | awk '/SONAME/ {print $2}' || true)"
soname="${soname:-libonnxruntime.so.1}"

# ---- 2. the headers, from Debian trixie ----------------------------------------------------
header_ok() { [ -f "$dest/include/onnxruntime_cxx_api.h" ] && [ -f "$dest/include/onnxruntime_c_api.h" ]; }

# URIs of the machine's Debian archive (not the security archive), deb822 or one-line format.
archive_uris() {
    local f="/etc/apt/sources.list.d/debian.sources"
    if [ -r "$f" ]; then
        awk 'BEGIN { RS=""; FS="\n" }
             { uris=""; suites=""
               for (i = 1; i <= NF; i++) {
                 if ($i ~ /^URIs:/)   { sub(/^URIs:[ \t]*/, "", $i); uris=$i }
                 if ($i ~ /^Suites:/) { suites=$i }
               }
               if (uris != "" && suites !~ /-security/) print uris }' "$f" | tr ' ' '\n' | sed '/^$/d'
    fi
    if [ -r /etc/apt/sources.list ]; then
        awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i+1) !~ /-security/) print $i; break } }' \
            /etc/apt/sources.list
    fi
}

fetch_headers() {
    command -v apt-get >/dev/null || die "apt-get not found: set ONNXRUNTIME_ROOT to an official ONNX Runtime release instead"
    command -v dpkg-deb >/dev/null || die "dpkg-deb not found: set ONNXRUNTIME_ROOT to an official ONNX Runtime release instead"
    tmp="$(mktemp -d)"
    mkdir -p "$tmp/lists/partial" "$tmp/cache/archives/partial" "$tmp/dl"
    local keyring=/usr/share/keyrings/debian-archive-keyring.gpg opts="" uris
    [ -r "$keyring" ] && opts="signed-by=$keyring"
    uris="$(archive_uris | awk '!seen[$0]++')"
    [ -n "$uris" ] || uris="${DEBIAN_MIRROR:-}"
    [ -n "$uris" ] || die "no Debian archive found in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list: set DEBIAN_MIRROR to your Debian mirror URI, or ONNXRUNTIME_ROOT to an ONNX Runtime release"
    : > "$tmp/sources.list"
    for u in $uris; do
        echo "deb ${opts:+[$opts] }$u $suite main" >> "$tmp/sources.list"
    done
    local apt=(-q -o "Dir::Etc::sourcelist=$tmp/sources.list" -o "Dir::Etc::sourceparts=-"
               -o "Dir::State::Lists=$tmp/lists" -o "Dir::Cache=$tmp/cache"
               -o "Dir::State::status=/dev/null" -o "Debug::NoLocking=1"
               -o "APT::Get::List-Cleanup=0" -o "Acquire::Check-Valid-Until=false")
    [ "$(id -u)" = 0 ] && apt+=(-o "APT::Sandbox::User=root")
    info "fetching $package from Debian $suite ($(echo $uris | tr '\n' ' '))"
    apt-get "${apt[@]}" update >"$tmp/update.log" 2>&1 \
        || { cat "$tmp/update.log" >&2; die "apt-get update for $suite failed (network?)"; }
    (cd "$tmp/dl" && apt-get "${apt[@]}" download "$package" >"$tmp/download.log" 2>&1) \
        || { cat "$tmp/download.log" >&2; die "apt-get download $package failed"; }
    local deb; deb="$(ls "$tmp"/dl/*.deb)"
    dpkg-deb -x "$deb" "$tmp/x"
    [ -f "$tmp/x/usr/include/onnxruntime/onnxruntime_cxx_api.h" ] || die "$deb has no onnxruntime_cxx_api.h"
    mkdir -p "$stage/include"
    cp -a "$tmp/x/usr/include/onnxruntime/." "$stage/include/"
    dpkg-deb -f "$deb" Version > "$stage/include/DEBIAN_VERSION"
}

tmp=""
stage=""
cleanup() { [ -z "$tmp" ] || rm -rf "$tmp"; [ -z "$stage" ] || rm -rf "$stage"; }
trap cleanup EXIT
# Stage inside DEST (git-ignored there), then rename the parts into place.
mkdir -p "$dest"
stage="$(mktemp -d "$dest/.stage.XXXXXX")"
chmod 755 "$stage"
if header_ok && [ "$force" = 0 ]; then
    cp -a "$dest/include" "$stage/include"
else
    fetch_headers
fi

api="$(awk '/^#define ORT_API_VERSION/ {print $3}' "$stage/include/onnxruntime_c_api.h")"
[ -n "$api" ] || die "cannot read ORT_API_VERSION from the headers"
hdr_version="$(cat "$stage/include/DEBIAN_VERSION" 2>/dev/null || echo "API $api")"
if [ "$api" -gt "$lib_minor" ]; then
    die "headers ($hdr_version, API $api) are newer than the library ($lib_version): need onnxruntime>=1.$api"
fi

# ---- 3. lib/: symlinks into the wheel, official-tarball layout -----------------------------
mkdir -p "$stage/lib"
ln -sf "$lib" "$stage/lib/libonnxruntime.so"
ln -sf "$lib" "$stage/lib/$soname"
ln -sf "$lib" "$stage/lib/libonnxruntime.so.$lib_version"
printf 'headers=%s api=%s\nlibrary=%s %s\n' "$hdr_version" "$api" "$lib_version" "$lib" > "$stage/VERSIONS"

# Swap each part into place with a rename (never a half-written include/ or lib/).
for part in include lib VERSIONS; do
    rm -rf "$dest/.old.$part"
    if [ -e "$dest/$part" ]; then mv "$dest/$part" "$dest/.old.$part"; fi
    mv "$stage/$part" "$dest/$part"
    rm -rf "$dest/.old.$part"
done
info "headers $hdr_version (API $api), library onnxruntime $lib_version ($lib)"
echo "$dest"

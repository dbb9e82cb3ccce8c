#!/usr/bin/env bash
# Builds anyaccel's C library and installs it under a prefix:
#
#   ffi/install.sh [PREFIX]            (default /usr/local)
#
#   PREFIX/lib/libanyaccel.so, PREFIX/lib/libanyaccel.a
#   PREFIX/include/anyaccel.h
#   PREFIX/lib/pkgconfig/anyaccel.pc   (from ffi/anyaccel.pc.in)
#
# Environment: CARGO_TARGET_DIR as cargo reads it; LIBDIR and INCLUDEDIR to place the files
# elsewhere (default PREFIX/lib and PREFIX/include); NO_BUILD=1 to install what is built.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
prefix="${1:-/usr/local}"
libdir="${LIBDIR:-$prefix/lib}"
includedir="${INCLUDEDIR:-$prefix/include}"
target_dir="${CARGO_TARGET_DIR:-$root/target}"

if [ "${NO_BUILD:-0}" != 1 ]; then
    cargo build --release -p anyaccel-ffi --manifest-path "$root/Cargo.toml"
fi

version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -n 1)"
mkdir -p "$libdir/pkgconfig" "$includedir"
install -m 0755 "$target_dir/release/libanyaccel.so" "$libdir/libanyaccel.so"
install -m 0644 "$target_dir/release/libanyaccel.a" "$libdir/libanyaccel.a"
install -m 0644 "$root/ffi/include/anyaccel.h" "$includedir/anyaccel.h"
sed -e "s|@PREFIX@|$prefix|g" -e "s|@LIBDIR@|$libdir|g" -e "s|@INCLUDEDIR@|$includedir|g" \
    -e "s|@VERSION@|$version|g" "$root/ffi/anyaccel.pc.in" >"$libdir/pkgconfig/anyaccel.pc"
echo "installed anyaccel $version under $prefix (pkg-config file: $libdir/pkgconfig/anyaccel.pc)"

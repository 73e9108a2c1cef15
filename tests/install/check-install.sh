#!/usr/bin/env bash
# Installs a configured build into a temporary prefix and builds the consumer
# program against it both ways: CMake's find_package (shared and static) and
# pkg-config. usage: check-install.sh <build dir>
set -euo pipefail
build=$(realpath "$1")
here=$(dirname "$(realpath "$0")")
prefix=$(mktemp -d /tmp/ftq-install.XXXXXX)
work=$(mktemp -d /tmp/ftq-consumer.XXXXXX)
trap 'rm -rf "$prefix" "$work"' EXIT
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir=$(ls -d "$prefix"/lib*/ | head -1)
test -f "$prefix/include/libftq/ftq.h"
test -f "$libdir/pkgconfig/libftq.pc"
test -f "$libdir/cmake/libftq/libftqConfig.cmake"
soname=$(readelf -d "$libdir/libftq.so" | sed -n 's/.*SONAME.*\[\(.*\)\]/\1/p')
[ "$soname" = "libftq.so.0" ] || { echo "unexpected SONAME $soname"; exit 1; }
echo "installed into $prefix (SONAME $soname)"

# 1. CMake package
cmake -S "$here/consumer" -B "$work/cmake" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" >/dev/null
cmake --build "$work/cmake" >/dev/null
LD_LIBRARY_PATH="$libdir" "$work/cmake/consumer_shared"
"$work/cmake/consumer_static"
# 2. pkg-config (shared, then static with Libs.private)
export PKG_CONFIG_PATH="$libdir/pkgconfig"
cc -o "$work/pc_shared" "$here/consumer/consumer.c" $(pkg-config --cflags --libs libftq)
LD_LIBRARY_PATH="$libdir" "$work/pc_shared"
cc -o "$work/pc_static" "$here/consumer/consumer.c" $(pkg-config --cflags libftq) \
  "$libdir/libftq.a" $(pkg-config --libs-only-l --static libftq | sed 's/-lftq//')
"$work/pc_static"
echo "install check OK"

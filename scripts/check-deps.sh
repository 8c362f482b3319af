#!/usr/bin/env bash
# Exits non-zero (listing what is missing) when a package that the build needs is absent.
missing=0
for pc in openblas lapacke libcjson zlib stb icu-uc criterion; do
  pkg-config --exists "$pc" || { echo "missing: pkg-config module '$pc'"; missing=1; }
done
[ -f /usr/include/Random123/philox.h ] || { echo "missing: librandom123-dev"; missing=1; }
[ -f /usr/include/stb/stb_image.h ] || { echo "missing: libstb-dev"; missing=1; }
# make fuzz: clang with libFuzzer (libclang-rt-14-dev) and clang's OpenMP (libomp-dev)
command -v clang >/dev/null || { echo "missing: clang"; missing=1; }
ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 ||
    ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-*.a >/dev/null 2>&1 ||
    { echo "missing: libclang-rt-14-dev (libFuzzer)"; missing=1; }
ls /usr/lib/llvm-*/lib/libomp.so >/dev/null 2>&1 || { echo "missing: libomp-dev"; missing=1; }
exit $missing

#!/usr/bin/env bash
# Exits non-zero (listing what is missing) when a package that the build needs is absent.
missing=0
for pc in openblas lapacke libcjson zlib stb icu-uc criterion; do
  pkg-config --exists "$pc" || { echo "missing: pkg-config module '$pc'"; missing=1; }
done
[ -f /usr/include/Random123/philox.h ] || { echo "missing: librandom123-dev"; missing=1; }
[ -f /usr/include/stb/stb_image.h ] || { echo "missing: libstb-dev"; missing=1; }
exit $missing

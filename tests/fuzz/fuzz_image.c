/* fuzz_image.c: libFuzzer target for the image-folder reader's decoder (src/data/imagefolder.c,
 * data_image_decode): PNG or JPEG bytes, checked by their signature and by the size stbi_info
 * reports, then decoded by stb_image. stb_image's implementation is compiled into this target from
 * Debian's header (libstb-dev, the same version libstb.so is built from), so that the fuzzer sees
 * its branches and the sanitizers check its memory accesses (signed overflow excepted: see
 * CMakeLists.txt and tests/fuzz/known/). */
#define STB_IMAGE_IMPLEMENTATION
#include <stb/stb_image.h>

#include "data/source.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    DataImage img;
    JtError err = {{0}};
    int rc = data_image_decode(data, size, "image.png", &img, &err);
    fuzz_expect_message(rc, &err, "data_image_decode");
    if (rc != JT_OK) return 0;
    CHECK(img.w >= 1 && img.h >= 1 && img.c >= 1 && img.c <= 4, "decoded %dx%dx%d", img.w, img.h,
          img.c);
    volatile uint8_t sink = img.pixels[(size_t)img.w * (size_t)img.h * (size_t)img.c - 1];
    (void)sink;
    data_image_free(&img);
    return 0;
}

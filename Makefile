# The front door (house-style.md): thin wrappers around CMake/CTest.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=
WERROR ?= OFF

.PHONY: all deps test asan demo demo-ldm demo-pipeline bench bench-attrib bench-scaling fixtures twin clean

all: $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

# A fresh machine gets its Debian packages first (scripts/install-deps.sh uses sudo when not root).
$(BUILD)/Makefile:
	@scripts/check-deps.sh >/dev/null || scripts/install-deps.sh
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release -DJTRAK_WERROR=$(WERROR) $(CMAKE_FLAGS)

deps:
	scripts/install-deps.sh

test: all
	cd $(BUILD) && ctest --output-on-failure

# The whole suite once under AddressSanitizer + UndefinedBehaviorSanitizer.
asan:
	$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DJTRAK_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo"

demo: all
	$(BUILD)/jtrak demo

# The latent, text-conditional system (VAE + UNet2DConditionModel + caption contexts), offline.
demo-ldm: all
	$(BUILD)/jtrak demo-ldm

# Issue 14 item 5: a StableDiffusionPipeline folder made here (tiny CLIP with the real vocabulary,
# VAE and U-Net trained by jtrak on captioned Fashion-MNIST), sampled from a typed prompt,
# attributed and reported (scripts/demo-pipeline.sh; QUICK=1 for a one-minute smoke run).
demo-pipeline: all
	scripts/demo-pipeline.sh $(BUILD)

# SGEMM peak, U-Net, sampling, featurize/score beside traker, projections, scaling: one table
# (about 15 minutes on 2 cores; SMALL=1 for a quick end-to-end check). See scripts/bench.sh.
bench: all
	scripts/bench.sh $(BUILD)

# featurize and score beside the traker library (needs the twin's environment, ref/.venv).
bench-attrib: all
	scripts/bench-attrib.sh $(BUILD)

# featurize and score time as the training set and the targets grow, with fitted exponents.
bench-scaling: all
	scripts/bench-scaling.sh $(BUILD)

# The reference twin's environment ref/.venv (torch, diffusers, traker from PyPI).
twin:
	scripts/twin-env.sh

# Regenerates the committed fixtures with the real diffusers (needs PyPI access).
fixtures:
	scripts/make-fixtures.sh

clean:
	rm -rf build build-asan build-fuzz

# Every reader of files under libFuzzer + ASan + UBSan (clang), FUZZ_SECONDS each (default 60):
# a table of executions, exec/s, corpus size and findings per target (scripts/fuzz.sh).
.PHONY: fuzz
FUZZ_SECONDS ?= 60
FUZZ_RUNS ?=
FUZZ_SEED ?=
fuzz:
	@scripts/check-deps.sh >/dev/null || scripts/install-deps.sh
	CC=clang cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=RelWithDebInfo -DJTRAK_FUZZ=ON -DJTRAK_WERROR=$(WERROR)
	cmake --build build-fuzz --target fuzz_targets -j $(JOBS)
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_RUNS=$(FUZZ_RUNS) FUZZ_SEED=$(FUZZ_SEED) scripts/fuzz.sh build-fuzz

# The front door (house-style.md): thin wrappers around CMake/CTest.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=
WERROR ?= OFF

.PHONY: all deps test asan demo bench bench-attrib fixtures clean

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

bench: all
	scripts/bench.sh $(BUILD)

# featurize and score beside the traker library (needs the twin's environment, ref/.venv).
bench-attrib: all
	scripts/bench-attrib.sh $(BUILD)

# Regenerates the committed fixtures with the real diffusers (needs PyPI access).
fixtures:
	scripts/make-fixtures.sh

clean:
	rm -rf build build-asan

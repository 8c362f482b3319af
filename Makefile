# The front door (house-style.md): thin wrappers around CMake/CTest.
BUILD ?= build
JOBS ?= 2
CMAKE_FLAGS ?=

.PHONY: all deps test asan demo bench fixtures clean

all: $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

$(BUILD)/Makefile:
	@scripts/check-deps.sh || (echo "missing packages: run 'sudo scripts/install-deps.sh'" && false)
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

deps:
	scripts/install-deps.sh

test: all
	cd $(BUILD) && ctest --output-on-failure

# The whole suite once under AddressSanitizer + UndefinedBehaviorSanitizer.
asan:
	$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DJTRAK_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug"

demo: all
	$(BUILD)/jtrak demo

bench: all
	scripts/bench.sh $(BUILD)

# Regenerates the committed fixtures with the real diffusers (needs PyPI access).
fixtures:
	scripts/make-fixtures.sh

clean:
	rm -rf build build-asan

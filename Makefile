# The two commands: `make demo` and `make test`. Both install what is missing,
# configure and build in build/, then run the demo or every test.
BUILD_DIR ?= build
BUILD_TYPE ?= Release
GLAM_CUDA ?= AUTO
GLAM := $(BUILD_DIR)/glam
DEMO_DIR ?= demo
FORTUNES := /usr/share/games/fortunes
# What the demo's model continues once trained (printed as it is generated).
DEMO_PROMPT ?= Q: What is the best way to

.PHONY: all deps configure build demo demo-data test bench clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD_DIR)/build.ninja: CMakeLists.txt | deps
	cmake -S . -B $(BUILD_DIR) -G Ninja -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) -DGLAM_CUDA=$(GLAM_CUDA)

configure: deps $(BUILD_DIR)/build.ninja

build: configure
	cmake --build $(BUILD_DIR)

# The demo corpus: the plain-text fortune files of Debian's `fortunes` package.
demo-data: build
	@if [ -f $(DEMO_DIR)/data/manifest.json ]; then \
	  echo "demo data ready in $(DEMO_DIR)/data"; \
	else \
	  $(GLAM) data prepare --out $(DEMO_DIR)/data --vocab-size 2048 \
	    --input $$(ls -d $(FORTUNES)/* | grep -v -E '\.(dat|u8)$$'); \
	fi

demo: demo-data
	$(GLAM) plan configs/glam-tiny.toml
	$(GLAM) train configs/glam-tiny.toml --workers 2 --data $(DEMO_DIR)/data --metrics $(DEMO_DIR)/metrics.jsonl \
	  --checkpoint-dir $(DEMO_DIR)/checkpoints
	$(GLAM) generate --checkpoint $(DEMO_DIR)/checkpoints --prompt "$(DEMO_PROMPT)" --max-tokens 48 \
	  --temperature 0.8 --seed 1

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j2 --timeout 900

bench: build
	$(BUILD_DIR)/glam_bench

clean:
	rm -rf $(BUILD_DIR)

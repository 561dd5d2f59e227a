# make run  - install dependencies, build, fetch the default model, generate
# make test - build and run the test suite
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_ARGS ?=
PROMPT ?= The capital of France is

.PHONY: all setup build run test model clean

all: build

setup:
	@BUILD=$(BUILD) bash scripts/setup

build: setup
	@cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

model:
	@bash scripts/fetch-model >/dev/null

run: build model
	@$(BUILD)/invar generate --model "$$(bash scripts/fetch-model)" --prompt "$(PROMPT)" --max-tokens 32

test: build model
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L cpu

clean:
	rm -rf $(BUILD)

# One entry point. `make test` is exactly what CI runs (.ci/run).
SHELL := /bin/bash
CARGO ?= cargo
QEMU ?= qemu-system-aarch64
TARGET := aarch64-unknown-none
IMAGE := target/$(TARGET)/release/smmuv3-qemu
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# QEMU 10.0 from Debian's bookworm-backports, unpacked beside Debian's 7.2 (the default
# `qemu-system-aarch64`) by tests/qemu-10.sh: the second referee of the QEMU tests.
QEMU10 := $(CURDIR)/target/qemu-10/qemu-system-aarch64

# The Microkit SDK: MICROKIT_SDK when given, otherwise the one in ../shared when there is
# one (every developer's and CI's machine has it beside the project), otherwise none.
SHARED_SDK := $(abspath ../shared/microkit-sdk)
ifeq ($(strip $(MICROKIT_SDK)),)
MICROKIT_SDK := $(if $(wildcard $(SHARED_SDK)/bin/microkit),$(SHARED_SDK))
SDK_FROM := ../shared/microkit-sdk
else
SDK_FROM := MICROKIT_SDK
endif
export MICROKIT_SDK

.PHONY: all deps pd-deps test test-long host-test lint qemu-test microkit-test board-images fuzz demo image run bench bench-stages clean

all: test

# Install what is missing: QEMU's Arm system emulator, QEMU 10.0 beside it (where Debian's
# bookworm-backports can be had; it says so otherwise), the Linux guest's parts (Debian's
# arm64 kernel and busybox, our initramfs, libvmm and sDDF from ../shared, into
# target/linux-guest), the bare-metal Rust target, and what the PD build needs (pd-deps).
deps: pd-deps
	@command -v $(QEMU) >/dev/null 2>&1 || { \
		echo "installing qemu-system-arm (for $(QEMU))"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-arm; }
	@SUDO=$(SUDO) tests/qemu-10.sh $(dir $(QEMU10))
	@SUDO=$(SUDO) images/linux-guest/deps.sh target/linux-guest $(abspath ../shared)
	@rustup target list --installed 2>/dev/null | grep -qx $(TARGET) || rustup target add $(TARGET)
	@$(CARGO) fmt --version >/dev/null 2>&1 || rustup component add rustfmt
	@$(CARGO) clippy --version >/dev/null 2>&1 || rustup component add clippy

# The PDs: the nightly pinned in pds/rust-toolchain.toml with its components (rustup does
# not install a pinned toolchain by itself), libclang, which rust-sel4's build uses
# (bindgen over libsel4's headers), and the aarch64 C cross compiler for the C driver PD.
pd-deps:
	@cd pds && [ "$$(rustup component list --installed 2>/dev/null | grep -cE '^(rust-src|rustfmt|clippy)')" = 3 ] || { \
		echo "installing the PDs' toolchain and its components (pds/rust-toolchain.toml)"; rustup toolchain install; }
	@[ -n "$$LIBCLANG_PATH" ] || compgen -G "/usr/lib/llvm-*/lib/libclang-[0-9]*.so*" >/dev/null || { \
		echo "installing libclang-dev (rust-sel4's build runs bindgen)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libclang-dev; }
	@command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || { \
		echo "installing gcc-aarch64-linux-gnu (the C driver PD, built as Microkit's examples are)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc-aarch64-linux-gnu; }

test: deps lint host-test qemu-test microkit-test fuzz

# More of the model-based test (10^6 random steps) and of the exhaustive one (every
# sequence of four steps), optimised; and the same harness over the SMMUv3 and the
# SMMUv2 (MMU-500) backends on their models (10^5 steps, every sequence of three).
test-long:
	$(CARGO) test -p iommu-pd --release --test model --test exhaustive -- --ignored
	$(CARGO) test -p smmuv3-service -p smmuv2-service --release --test service_model -- --ignored
	bash tests/render-svg.sh
	@if [ -x "$${MICROKIT_SDK:-}/bin/microkit" ]; then $(MAKE) -C images reach REACH_SEEDS=1000; \
	else echo "reach-differential: skipped: no Microkit SDK (MICROKIT_SDK)"; fi

# Decode and dispatch under libFuzzer, for a bounded time, with the PDs' pinned nightly
# (cargo-fuzz needs one, and pd-deps installs it). cargo-fuzz is installed when missing;
# only if that fails (no registry) is fuzzing skipped, and it says so.
FUZZ_SECONDS ?= 30
PD_NIGHTLY := $(shell sed -n 's/^channel *= *"\(.*\)"/\1/p' pds/rust-toolchain.toml)
fuzz: pd-deps
	@cargo fuzz --version >/dev/null 2>&1 || { \
		echo "installing cargo-fuzz (cargo install cargo-fuzz --locked)"; \
		cargo install cargo-fuzz --locked >/dev/null 2>&1 || true; }
	@if ! cargo fuzz --version >/dev/null 2>&1; then \
		echo "fuzz: skipped: cargo-fuzz is not installed and could not be (cargo install cargo-fuzz)"; \
	else \
		echo "fuzz: $(FUZZ_SECONDS) s of decode and dispatch with $(PD_NIGHTLY)"; \
		log=$$(mktemp); \
		if (cd iommu-pd/fuzz && cargo +$(PD_NIGHTLY) fuzz run dispatch -- -max_total_time=$(FUZZ_SECONDS)) >$$log 2>&1; \
		then tail -1 $$log; rm -f $$log; else cat $$log; rm -f $$log; exit 1; fi; \
	fi

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy -p smmuv3-qemu --target $(TARGET) --release -- -D warnings

host-test:
	$(CARGO) test
	@bash images/check-boot-test.sh
	@bash images/polled-test.sh
	@bash images/c-includes-test.sh

image:
	$(CARGO) build -p smmuv3-qemu --target $(TARGET) --release

# The SMMUv3 driver against QEMU's SMMUv3 with edu devices doing real DMA: on QEMU 7.2
# (Debian's) and on 10.0 (bookworm-backports), each where installed, each run saying which.
qemu-test: deps image
	@ran=0; for q in $(QEMU) $(QEMU10); do \
		if ! command -v $$q >/dev/null 2>&1; then echo "qemu-test: skipped $$q: not installed"; continue; fi; \
		echo "qemu-test: on $$($$q --version | head -n 1) ($$q)"; \
		QEMU=$$q tests/smmuv3-qemu/run.sh $(IMAGE) || { echo "qemu-test: FAILED on $$($$q --version | head -n 1)"; exit 1; }; \
		echo "qemu-test: passed on $$($$q --version | head -n 1)"; \
		ran=$$((ran + 1)); \
	done; [ $$ran -gt 0 ]

# The same image, narrated: what each device tried, what was blocked and why.
demo: deps image
	DEMO=1 tests/smmuv3-qemu/run.sh $(IMAGE)

# The Microkit system image (needs MICROKIT_SDK; see the README).
run: deps
	@if [ -z "$$MICROKIT_SDK" ]; then \
		echo "make run boots the Microkit system image: set MICROKIT_SDK to a Microkit 2.3 SDK built for qemu_virt_aarch64 (see README); there is none at $(SHARED_SDK)."; \
		echo "Without an SDK, 'make demo' shows the service and the SMMUv3 driver isolating real DMA on QEMU."; exit 2; fi
	$(MAKE) -C images run

# The Microkit systems: system.xml, the bypass-vs-service measurement (whose checks are
# that every path read the file right and the switch happened; its figures are printed,
# not judged), a mapping queue's flood beside a victim's calls (queue-fair.xml: its
# checks are that every call and entry was answered, and the victim's longest wait within
# a generous multiple of the bound the README states, on an instruction-counting clock),
# the IOMMU PD alone, Microkit's own iomap vocabulary, the SMMU failing while serving
# (smmu-failure.xml, a failure injected into the IOMMU PD's build, and iommu-panic.xml
# and iommu-panic-call.xml, the IOMMU PD's own panic at a notification and in a call; on
# QEMU 10.0 only: on
# 7.2, which has no GBPA, the driver cannot stop the DMA, as the README says), devices behind PCI
# bridges (pci-topology.xml), a device passed through to a virtual machine, a disk passed
# through to a Linux guest on libvmm (on QEMU 10.0 too where it is installed), and the
# MMU-500 boards (board-images).
# system.xml runs on both configurations: debug (one core) and smp-debug (four), and on
# debug on QEMU 10.0 too where it is installed (the image is built once for both), as
# pci-topology.xml does.
# system.xml also runs polled: without the SMMU's interrupts (SYSTEM=polled, derived from
# system.xml and system.expect by images/polled.py), so the IOMMU PD polls its event queue.
microkit-test: deps
	@if [ -z "$$MICROKIT_SDK" ]; then \
		echo "microkit-image: skipped: no Microkit SDK (MICROKIT_SDK is not set and there is none at $(SHARED_SDK)), so the seL4 Microkit images were not built or booted (see README)"; \
	else \
		echo "microkit-image: using the Microkit SDK at $$MICROKIT_SDK (from $(SDK_FROM)): $$(cat $$MICROKIT_SDK/VERSION 2>/dev/null)"; \
		echo "microkit-image: system.xml on $$($(QEMU) --version | head -n 1)"; \
		$(MAKE) -C images test && \
		if command -v $(QEMU10) >/dev/null 2>&1; then \
			echo "microkit-image: system.xml again on $$($(QEMU10) --version | head -n 1) ($(QEMU10)), its SMMU with both stages (stage=nested): every device stays at stage 1"; \
			$(MAKE) -C images test QEMU=$(QEMU10) SMMU_STAGES=nested; \
		else echo "microkit-image: system.xml on QEMU 10.0 skipped: not installed ($(QEMU10); make deps)"; fi && \
		echo "microkit-image: system.xml polled (no SMMU interrupt wired) on $$($(QEMU) --version | head -n 1)" && \
		$(MAKE) -C images test SYSTEM=polled && \
		$(MAKE) -C images rules && $(MAKE) -C images accepted && $(MAKE) -C images reach && \
			$(MAKE) -C images test SYSTEM=blk-bench && \
			$(MAKE) -C images test SYSTEM=queue-fair && \
			$(MAKE) -C images test SYSTEM=iommu-boot && \
			$(MAKE) -C images test SYSTEM=microkit-iomap && \
			if command -v $(QEMU10) >/dev/null 2>&1; then \
				echo "microkit-image: smmu-failure.xml on $$($(QEMU10) --version | head -n 1): the SMMU stops answering (injected), DMA refused after"; \
				$(MAKE) -C images test SYSTEM=smmu-failure QEMU=$(QEMU10) && \
				echo "microkit-image: iommu-panic.xml on $$($(QEMU10) --version | head -n 1): the IOMMU PD panics (injected), DMA refused after" && \
				$(MAKE) -C images test SYSTEM=iommu-panic QEMU=$(QEMU10) && \
				echo "microkit-image: iommu-panic-call.xml on $$($(QEMU10) --version | head -n 1): the IOMMU PD panics in a client's call (injected), the call answered, DMA refused after" && \
				$(MAKE) -C images test SYSTEM=iommu-panic-call QEMU=$(QEMU10); \
			else echo "microkit-image: smmu-failure.xml, iommu-panic.xml and iommu-panic-call.xml skipped: they need QEMU 10.0, whose SMMU has GBPA ($(QEMU10); make deps)"; fi && \
			echo "microkit-image: pci-topology.xml on $$($(QEMU) --version | head -n 1)" && \
			$(MAKE) -C images test SYSTEM=pci-topology && \
			if command -v $(QEMU10) >/dev/null 2>&1; then \
				echo "microkit-image: pci-topology.xml again on $$($(QEMU10) --version | head -n 1) ($(QEMU10))"; \
				$(MAKE) -C images test SYSTEM=pci-topology QEMU=$(QEMU10); \
			else echo "microkit-image: pci-topology.xml on QEMU 10.0 skipped: not installed ($(QEMU10); make deps)"; fi && \
			$(MAKE) -C images test SYSTEM=vm-passthrough && \
			if command -v $(QEMU10) >/dev/null 2>&1; then \
				echo "microkit-image: vm-passthrough.xml again on $$($(QEMU10) --version | head -n 1), its SMMU with both stages (stage=nested)"; \
				$(MAKE) -C images test SYSTEM=vm-passthrough QEMU=$(QEMU10) SMMU_STAGES=nested; \
			fi && \
			echo "microkit-image: linux-guest.xml on $$($(QEMU) --version | head -n 1)" && \
			$(MAKE) -C images test SYSTEM=linux-guest && \
			if command -v $(QEMU10) >/dev/null 2>&1; then \
				echo "microkit-image: linux-guest.xml again on $$($(QEMU10) --version | head -n 1), its SMMU with both stages (stage=nested)"; \
				$(MAKE) -C images test SYSTEM=linux-guest QEMU=$(QEMU10) SMMU_STAGES=nested; \
			fi && \
			$(MAKE) -C images test MICROKIT_CONFIG=smp-debug && \
		$(MAKE) board-images; \
	fi

# The MMU-500 boards, where the SDK has them: zcu102's image (images/zcu102.xml) built and
# booted on QEMU's xlnx-zcu102, which has no SMMU, so the IOMMU PD fails closed and
# refuses every request (images/zcu102.expect; on QEMU 10.0 too where installed), and,
# with no IOMMU PD at all, QEMU's GDMA copying by physical address unconfined
# (images/zcu102-unconfined.xml: what the refusal keeps from happening);
# tqma8xqp1gb's (images/tqma8xqp1gb.xml) built and checked: QEMU has no i.MX8QXP.
board-images:
	@if [ -d "$$MICROKIT_SDK/board/zcu102/debug" ]; then \
		echo "microkit-image: zcu102.xml on $$($(QEMU) --version | head -n 1) (xlnx-zcu102: no SMMU)"; \
		$(MAKE) -C images test MICROKIT_BOARD=zcu102 && \
		$(MAKE) -C images test MICROKIT_BOARD=zcu102 SYSTEM=zcu102-unconfined && \
		if command -v $(QEMU10) >/dev/null 2>&1; then \
			echo "microkit-image: zcu102.xml again on $$($(QEMU10) --version | head -n 1)"; \
			$(MAKE) -C images test MICROKIT_BOARD=zcu102 QEMU=$(QEMU10); \
		fi; \
	else echo "microkit-image: zcu102 skipped: the SDK at $$MICROKIT_SDK has no board/zcu102/debug"; fi && \
	if [ -d "$$MICROKIT_SDK/board/tqma8xqp1gb/debug" ]; then \
		$(MAKE) -C images board-image MICROKIT_BOARD=tqma8xqp1gb; \
	else echo "microkit-image: tqma8xqp1gb skipped: the SDK at $$MICROKIT_SDK has no board/tqma8xqp1gb/debug"; fi

bench:
	$(CARGO) bench -p smmuv3 -p smmuv3-service
	$(CARGO) bench -p iommu-sdf
	@if [ -z "$$MICROKIT_SDK" ]; then \
		echo "microkit bench: skipped: no Microkit SDK (MICROKIT_SDK is not set and there is none at $(SHARED_SDK)); the bypass-vs-service measurement boots the Microkit image"; \
	else \
		$(MAKE) -C images test SYSTEM=blk-bench | grep -E '^blk-bench: (pass|through|in )|microkit-image'; \
		$(MAKE) bench-stages; \
	fi

# The Linux guest's disk read with its disk at stage 1 and at stage 2, on the same QEMU
# 10.0, alternately (STAGE_RUNS times each), each run checked as make test checks it.
STAGE_RUNS ?= 3
bench-stages:
	@if [ -z "$$MICROKIT_SDK" ] || ! command -v $(QEMU10) >/dev/null 2>&1; then \
		echo "stage bench: skipped: needs a Microkit SDK and QEMU 10.0 ($(QEMU10); make deps)"; \
	else for i in $$(seq $(STAGE_RUNS)); do for st in 1 nested; do \
		$(MAKE) -s -C images test SYSTEM=linux-guest QEMU=$(QEMU10) SMMU_STAGES=$$st 2>&1 | \
			grep -E '^iommu: device disk|^guest-init: read 64 MiB|microkit-image: [0-9]+ passed' | sed "s/^/stage bench (run $$i, SMMU_STAGES=$$st): /"; \
	done; done; fi

clean:
	$(CARGO) clean

# softmax-to-flash: build, test, benchmark, plot.
#
#   make            build every stage (CPU-only when nvcc is missing)
#   make test       build and run the cmocka tests (installs libcmocka-dev if missing)
#   make bench      build, run every stage's benchmarks (tools/bench_shapes.tsv,
#                   through tools/bench.sh), then draw the plots; gnuplot-nox
#                   is installed if missing, and if it cannot be, the CSV are
#                   kept and the plots skipped (`make plots` draws them later)
#   make bench QUICK=1   every stage on small shapes: seconds, also on a CPU
#   make plots      redraw the plots from the CSV files in $(BENCH_DIR) (plots/draw.sh)
#   make snippets   copy the marked source regions into the notes' code blocks
#   make profile STAGE=01   run one stage under Nsight Compute (ncu), report in build/profile/
#   make sanitize   host code with AddressSanitizer + UBSan (build-san/, CPU-only): tests and every stage
#   make ladder-diff N=3   the tensor-core ladder: what one rung changes (tools/ladder_diff.sh)
#
# `make test` also checks that the notes' code blocks match the source
# (tools/snippets.sh --check) and that relative links in the Markdown files
# resolve (tools/check_links.sh).
#
# Variables: CUDA_ARCH=90 (the SM generation to build for; machine code and PTX
# are embedded), NVCC=path/to/nvcc (empty: CPU-only build), BENCH_DIR, DEVICE
# (auto|cpu|gpu), QUICK (0|1), NO_INSTALL=1 (never apt-get gnuplot),
# EXTRA_CFLAGS (compile) and LDFLAGS (link), e.g. for a sanitizer.

SHELL := /bin/bash
comma := ,
BUILD ?= build
BENCH_DIR ?= $(BUILD)/bench
DEVICE ?= auto
QUICK ?= 0

NVCC ?= $(shell command -v nvcc 2>/dev/null || { test -x /usr/local/cuda/bin/nvcc && echo /usr/local/cuda/bin/nvcc; })
CUDA_ARCH ?= 90
HAVE_CUDA := $(if $(strip $(NVCC)),1,0)
# 1 when NVCC= was given on purpose (the programs say so instead of "not found")
NVCC_EMPTY := $(if $(filter command line environment%,$(origin NVCC)),$(if $(strip $(NVCC)),0,1),0)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC))

CC ?= gcc
# common/ by concern: numerics (types, fp64 references, tolerances), driver
# (options, tables, .npy, the stage drivers, the ledger), device (GPU helpers,
# hardware counters). Headers are included by name.
COMMON_INC := -Icommon/numerics -Icommon/driver -Icommon/device
CFLAGS := $(EXTRA_CFLAGS) -std=c11 -O2 -g -Wall -Wextra -Werror -D_POSIX_C_SOURCE=200809L -DHAVE_CUDA=$(HAVE_CUDA) -DSTF_NVCC_EMPTY=$(NVCC_EMPTY) $(COMMON_INC) -MMD -MP
LDLIBS := -lm -ldl -lpthread

ifeq ($(HAVE_CUDA),1)
CFLAGS += -I$(CUDA_HOME)/include
NVFLAGS_BASE := -O3 -std=c++17 -DHAVE_CUDA=1 $(COMMON_INC) -lineinfo -Xcompiler -Wall,-Wextra -Werror all-warnings
NVFLAGS := $(NVFLAGS_BASE) -gencode arch=compute_$(CUDA_ARCH),code=[sm_$(CUDA_ARCH),compute_$(CUDA_ARCH)]
# Stage 05c's kernels use instructions that exist only in sm_90a (wgmma, TMA
# tensor loads, setmaxnreg): with CUDA_ARCH=90 (or 90a) its .cu files are
# built for sm_90a (HOP_SM90A=1); any other CUDA_ARCH builds them empty and
# the stage declines its shapes with the reason.
HOP_NVFLAGS := $(if $(filter 90 90a,$(CUDA_ARCH)),$(NVFLAGS_BASE) -gencode arch=compute_90a$(comma)code=sm_90a -DHOP_SM90A=1,$(NVFLAGS))
$(BUILD)/obj/stages/05c_%.cu.o: NVFLAGS = $(HOP_NVFLAGS)
CUDA_LIBDIR := $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/targets/x86_64-linux/lib))
# cudart is linked statically: the programs start (and fall back to the CPU)
# on machines without a CUDA driver. cuBLAS is shared, found through the rpath.
LDLIBS := -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcublas -lcudart_static -lrt -lstdc++ $(LDLIBS)
endif

# ---------------------------------------------------------------- sources
COMMON_C  := $(wildcard common/*/*.c)
COMMON_CU := $(if $(filter 1,$(HAVE_CUDA)),$(wildcard common/*/*.cu))
COMMON_OBJ := $(COMMON_C:%.c=$(BUILD)/obj/%.o) $(COMMON_CU:%.cu=$(BUILD)/obj/%.cu.o)

STAGES := $(sort $(notdir $(wildcard stages/[0-9][0-9]_* stages/[0-9][0-9][a-z]_*)))
# Objects of a stage: every .c but main.c, and its .cu files when CUDA is on.
stage_objs = $(patsubst %.c,$(BUILD)/obj/%.o,$(filter-out %/main.c,$(wildcard stages/$(1)/*.c))) \
             $(if $(filter 1,$(HAVE_CUDA)),$(patsubst %.cu,$(BUILD)/obj/%.cu.o,$(wildcard stages/$(1)/*.cu)))
stage_lib = $(BUILD)/lib/lib$(1).a
# A stage links its own library and every earlier one (stage N uses N-1).
libs_upto = $(foreach s,$(STAGES),$(if $(filter $(s),$(firstword $(sort $(s) $(1)))),$(call stage_lib,$(s))))
ALL_STAGE_LIBS := $(foreach s,$(STAGES),$(call stage_lib,$(s)))
# Reverse order for linking: later stages first, so their references into
# earlier stages resolve.
reverse = $(if $(1),$(call reverse,$(wordlist 2,$(words $(1)),$(1))) $(firstword $(1)))

# A stage gets a program only once it has a main.c (a stage folder can hold its
# library before its program exists; its library still builds and is linked).
STAGE_BINS := $(foreach s,$(STAGES),$(if $(wildcard stages/$(s)/main.c),$(BUILD)/bin/$(s)))

TEST_SRC := $(wildcard tests/test_*.c)
TEST_CU  := $(if $(filter 1,$(HAVE_CUDA)),$(wildcard tests/*.cu))
TEST_HELPERS := $(filter-out tests/test_%.c,$(wildcard tests/*.c))
TEST_OBJ_EXTRA := $(TEST_HELPERS:%.c=$(BUILD)/obj/%.o) $(TEST_CU:%.cu=$(BUILD)/obj/%.cu.o)
TEST_BINS := $(TEST_SRC:tests/%.c=$(BUILD)/bin/%)

.PHONY: all test bench plots snippets docs-check profile sanitize clean check-cmocka banner ladder-diff
# Keep the objects that pattern chains would otherwise delete as intermediates.
.SECONDARY:
.DEFAULT_GOAL := all

all: banner $(STAGE_BINS) $(ALL_STAGE_LIBS)

# The CPU-only note says why: NVCC= given on purpose (make sanitize, the CPU
# build), or no nvcc found.
banner:
ifeq ($(HAVE_CUDA),0)
	@echo "note: $(if $(filter command line environment%,$(origin NVCC)),NVCC is empty (set on purpose),nvcc not found (PATH$(comma) /usr/local/cuda/bin)): building the CPU-only programs."
endif

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@

$(BUILD)/obj/%.cu.o: %.cu
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -MD -MF $(@:.o=.d) -c $< -o $@

$(BUILD)/lib/libcommon.a: $(COMMON_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

define STAGE_RULES
$(call stage_lib,$(1)): $(call stage_objs,$(1))
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^
$(BUILD)/bin/$(1): $(BUILD)/obj/stages/$(1)/main.o $(call libs_upto,$(1)) $(BUILD)/lib/libcommon.a
	@mkdir -p $$(@D)
	$(CC) $(LDFLAGS) $$< $(call reverse,$(call libs_upto,$(1))) $(BUILD)/lib/libcommon.a $(LDLIBS) -o $$@
endef
$(foreach s,$(STAGES),$(eval $(call STAGE_RULES,$(s))))

# ---------------------------------------------------------------- tests
# The tests carry libcmocka.so.0 beside them (rpath $ORIGIN), so the binaries
# also run on a machine that has no cmocka installed (the GPU machine).
CMOCKA_SO := $(firstword $(wildcard /usr/lib/x86_64-linux-gnu/libcmocka.so.0 /usr/lib/*/libcmocka.so.0 /usr/lib/libcmocka.so.0))

$(BUILD)/bin/test_%: $(BUILD)/obj/tests/test_%.o $(TEST_OBJ_EXTRA) $(ALL_STAGE_LIBS) $(BUILD)/lib/libcommon.a | check-cmocka
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) $< $(TEST_OBJ_EXTRA) $(call reverse,$(ALL_STAGE_LIBS)) $(BUILD)/lib/libcommon.a \
	    -lcmocka -Wl,-rpath,'$$ORIGIN' $(LDLIBS) -o $@
	@cp -L $(or $(CMOCKA_SO),$(firstword $(wildcard /usr/lib/*/libcmocka.so.0))) $(@D)/ 2>/dev/null || true

$(BUILD)/obj/tests/%.o: CFLAGS += -Wno-unused-parameter

check-cmocka:
	@bash tools/need_cmocka.sh

tests: $(TEST_BINS)

test: banner check-cmocka $(STAGE_BINS) $(TEST_BINS)
	@BUILD=$(BUILD) bash tools/run_tests.sh $(TEST_BINS)

# ---------------------------------------------------------------- sanitize
# The host code built with AddressSanitizer and UBSan into its own folder,
# CPU-only (NVCC= ): ASan and the CUDA runtime do not mix well (the driver
# maps memory where ASan keeps its shadow gap, so CUDA needs
# protect_shadow_gap=0 to start at all, and LeakSanitizer then reports the
# driver's own allocations), and the GPU code has compute-sanitizer instead
# (tools/gpu_check.sh). Then tools/sanitize.sh: the tests, every stage
# program on a small shape and on bad input (what it runs: its header).
# Any sanitizer report (leaks included) fails the target. Logs: $(SAN_BUILD)/sanitize/.
SAN_BUILD ?= build-san
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all
# GCC's flow analysis sees the instrumented code and warns about malloc'd
# buffers filled in a loop (stages/04 one_pass_cpu.c's qr): a false positive there only.
SAN_CFLAGS := $(SAN_FLAGS) -Wno-maybe-uninitialized

sanitize: check-cmocka
	@$(MAKE) --no-print-directory BUILD=$(SAN_BUILD) NVCC= EXTRA_CFLAGS="$(SAN_CFLAGS)" LDFLAGS="$(SAN_FLAGS)" all tests && SAN_BUILD=$(SAN_BUILD) bash tools/sanitize.sh

# The documentation checks alone (no build).
docs-check:
	@bash tools/snippets.sh --check && bash tools/check_links.sh

snippets:
	@bash tools/snippets.sh --update

# ---------------------------------------------------------------- bench
# The benchmarks run first; the plots need gnuplot, which is installed if it
# can be (plots/need_gnuplot.sh). A machine without it (a GPU machine without
# internet) still gets every CSV; `make plots` elsewhere draws them.
bench: banner $(STAGE_BINS)
	@BIN=$(BUILD)/bin OUT=$(BENCH_DIR) DEVICE=$(DEVICE) QUICK=$(QUICK) DRAW=1 bash tools/bench.sh

plots:
	@bash plots/need_gnuplot.sh || { echo "error: the plots need gnuplot: sudo apt-get install -y gnuplot-nox"; exit 1; }
	@DIR=$(BENCH_DIR) bash plots/draw.sh

profile: $(STAGE_BINS)
	@test -n "$(STAGE)" || { echo "usage: make profile STAGE=NN (one of: $(STAGES))"; exit 2; }
	@BUILD=$(BUILD) STAGE=$(STAGE) bash tools/profile.sh

# The tensor-core ladder's changes, one rung against the previous (stage 05b): make ladder-diff N=3
ladder-diff: ; @bash tools/ladder_diff.sh $(N)

clean:
	rm -rf $(BUILD)

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

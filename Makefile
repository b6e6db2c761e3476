# licbench: `make benchmark` and `make test` work on a fresh machine (they install first).
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
DATA   ?= ../shared/datasets
# Figure files name a dataset by its path below DATA ($DATA/bsds500/train), never a machine path.
export LICBENCH_DATASETS := $(DATA)

.PHONY: install openjpeg ffmpeg chromium benchmark lint test zoo zoo-balle2017 zoo-balle2018 zoo-minnen2018 zoo-wcae zoo-nowcae zoo-theis2017 leaderboard kodak-main kodak-supplement kodak-toderici kodak-anchors kodak-anchors-report kodak-coconet kodak kodak-report speed zoo-coconet zoo-fmm zoo-jiang2017 zoo-cheng2018 zoo-toderici2017 recipe-toderici2017 train-speed bgd-decoder robustness fuzz odd-images determinism clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	$(PY) -m pip install -q --no-deps pyiqa==0.1.16 'huggingface_hub>=0.20,<1'  # NLPD; its declared deps would replace numpy/torch
	$(MAKE) --no-print-directory openjpeg
	$(MAKE) --no-print-directory ffmpeg
	$(MAKE) --no-print-directory chromium
	touch $(STAMP)

# Debian packages, installed where we can (root with apt-get), else a note on what needs them.
define APT
if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
  apt-get install -y -q $(1) >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q $(1) >/dev/null; }; \
else echo "NOTE: $(2): sudo apt-get install $(1)"; fi
endef

# glymur needs a system OpenJPEG (>= 2.4); Debian's libopenjp2-7 when we can install it.
openjpeg:
	@$(PY) -c "import glymur, sys; sys.exit(glymur.version.openjpeg_version_tuple[:2] < (2, 4))" 2>/dev/null \
	|| { $(call APT,libopenjp2-7,JPEG 2000 needs OpenJPEG (or a glymurrc file)); }

# HEVC intra (x265) runs Debian's ffmpeg; it must list the libx265 encoder.
ffmpeg:
	@ffmpeg -hide_banner -encoders 2>/dev/null | grep -q libx265 || { $(call APT,ffmpeg,HEVC intra needs ffmpeg with libx265); }

# The leaderboard page's browser test (tests/test_report_browser.py) drives Debian's Chromium with Playwright.
chromium:
	@command -v chromium >/dev/null || { $(call APT,chromium,the browser test needs Chromium); }

# The main job on the embedded default data (scikit-image's photos), with the committed zoo.
benchmark: install
	$(VENV)/bin/licbench benchmark

lint: install
	$(VENV)/bin/ruff check .

# Two pytest workers (pytest-xdist), one thread each: the tests' own processes set their thread counts.
test: install lint
	OMP_NUM_THREADS=1 LICBENCH_DATASETS=$(DATA) $(PY) -m pytest -q -n 2

# The zoo: each method's curve trained on BSDS500 train under one declared CPU-time budget (the sum
# of a curve's points at most 2 CPU-hours; one thread a job; CPU time, so a loaded machine only takes
# longer). A curve is a base lambda, then warm starts to its neighbours (init_from) at a lower rate.
# Each checkpoint records its CPU-seconds, steps, wall time and command. A rerun skips what exists:
# `make -j2 zoo ZOO=outputs/zoo-next`, then move the new curves over results/zoo.
ZOO   ?= results/zoo
TRAIN  = $(VENV)/bin/licbench train data.root=$(DATA)/bsds500 logger=none threads=1 skip_existing=true
WARM   = model.lr=3.0e-4 model.warmup_steps=0
zoo: zoo-balle2017 zoo-wcae zoo-nowcae zoo-theis2017 zoo-balle2018 zoo-minnen2018 zoo-coconet zoo-fmm zoo-jiang2017 \
	zoo-cheng2018 zoo-toderici2017
# One point: $(1)'s experiment at lambda $(2) for CPU budget $(3), warm-started from its lambda $(4) point if given.
define POINT
$(TRAIN) experiment=$(1)_cpu model.lmbda=$(2) cpu_budget=$(3) $(if $(4),$(WARM) init_from=$(ZOO)/$(1)/$(1)-l$(4).ckpt) ckpt_path=$(ZOO)/$(1)/$(1)-l$(2).ckpt
endef
# A curve: lambda $(2) for $(3), then $(5) and $(6) warm-started from it and $(7) from $(6), each for $(4).
define CURVE
$(call POINT,$(1),$(2),$(3))
$(call POINT,$(1),$(5),$(4),$(2))
$(call POINT,$(1),$(6),$(4),$(2))
$(call POINT,$(1),$(7),$(4),$(6))
endef
# Ballé 2017 and the hyperprior anchors (Ballé 2018, Minnen 2018) share one ladder: 30 + 3 x 8 = 54 CPU-minutes.
LAMBDA_CURVE = $(call CURVE,$(1),0.013,00:00:30:00,00:00:08:00,0.025,0.0067,0.0018)
zoo-balle2017: install
	$(call LAMBDA_CURVE,balle2017)
zoo-balle2018: install
	$(call LAMBDA_CURVE,balle2018)
zoo-minnen2018: install
	$(call LAMBDA_CURVE,minnen2018)
# WCAE and its ablation NoWCAE share one recipe: 21 + 3 x 5 = 36 CPU-minutes each.
CAE_CURVE = $(call CURVE,$(1),0.00615,00:00:21:00,00:00:05:00,0.003,0.0125,0.025)
zoo-wcae: install
	$(call CAE_CURVE,wcae)
zoo-nowcae: install
	$(call CAE_CURVE,nowcae)

THEIS  = $(TRAIN) experiment=theis2017_cpu cpu_budget=00:00:03:00 model.fine_tune_scales=true model.lr=3.0e-3 \
	model.warmup_steps=0 init_from=$(ZOO)/theis2017/theis2017-l0.01.ckpt
zoo-theis2017: install  # 30 + 4 x 3 = 42 CPU-minutes: one model, then per-rate scale parameters (Theis et al. §3.2)
	$(TRAIN) experiment=theis2017_cpu model.lmbda=0.01 cpu_budget=00:00:30:00 ckpt_path=$(ZOO)/theis2017/theis2017-l0.01.ckpt
	$(THEIS) model.lmbda=0.005 ckpt_path=$(ZOO)/theis2017/theis2017-l0.005.ckpt
	$(THEIS) model.lmbda=0.0025 ckpt_path=$(ZOO)/theis2017/theis2017-l0.0025.ckpt
	$(THEIS) model.lmbda=0.00125 ckpt_path=$(ZOO)/theis2017/theis2017-l0.00125.ckpt
	$(THEIS) model.lmbda=0.0006 ckpt_path=$(ZOO)/theis2017/theis2017-l0.0006.ckpt

# The one-checkpoint methods, one run each for their experiment's budget (30 CPU-minutes): FMM (nothing
# to learn), Jiang 2017 (a RecCNN over every inner quality), Cheng 2018 (one CAE; rates from B and K)
# and Toderici 2017 (one RNN; rates from its iterations).
zoo-fmm zoo-jiang2017 zoo-cheng2018 zoo-toderici2017: zoo-%: install
	$(TRAIN) experiment=$*_cpu ckpt_path=$(ZOO)/$*/$*.ckpt

# CocoNet fits a network to each image when it encodes: its checkpoint holds the entropy tables alone.
zoo-coconet: install
	$(VENV)/bin/licbench train experiment=coconet_cpu logger=none ckpt_path=$(ZOO)/coconet/coconet.ckpt

# Recipe evidence (results/recipe/): candidate settings trained as the zoo trains them, each scored on the
# first 16 BSDS500 val images (never on Kodak). Toderici 2017's learning rate: 2e-3 (the recipe's until
# this evidence) against 1e-3 and 5e-4, 30 CPU-minutes each.
RECIPE ?= outputs/recipe
RECIPE_VAL = $(VENV)/bin/licbench benchmark data=folder data.root=$(DATA)/bsds500/val data.name=bsds500-val \
	data.limit=16 logger=none timing=off
TODERICI_LRS = 2e-3 1e-3 5e-4
recipe-toderici2017: install
	for lr in $(TODERICI_LRS); do \
	    $(TRAIN) experiment=toderici2017_cpu model.lr=$$lr ckpt_path=$(RECIPE)/toderici2017-lr$$lr/toderici2017/toderici2017.ckpt && \
	    $(RECIPE_VAL) paths.zoo_dir=$(RECIPE)/toderici2017-lr$$lr codecs=[toderici2017] \
	        +codec_overrides.toderici2017.points.iterations=[1,2,4,8,16] out_dir=results/recipe/toderici2017-lr$$lr || exit 1; \
	done

# The committed Kodak results, from the committed zoo (25-45 minutes each on 2 cores, kodak-main with metrics=ctc longer; in parallel,
# `make -j2 ...`, each run is best given one thread: OMP_NUM_THREADS=1 or threads=1):
# results/kodak/ (tables, plots, crops, leaderboard), results/kodak-supplement/ (FMM's 5-21 bpp,
# which overlap nothing else) and results/kodak-toderici/ (rANS and raw bits; Toderici takes ~0.5 s
# per iteration and image; encode and decode each run k iterations, the estimate is read off the stream).
# Each codec config's `paper:` curve is drawn dashed and tabled as published; KODAK_REFERENCES adds
# CompressAI's own JPEG, JPEG 2000 and BPG (x265 4:4:4) measurements beside ours. `make kodak-report`
# rebuilds the three leaderboards from the committed tables (minutes, nothing measured again).
KODAK_CODECS ?= [jpeg,jpeg2000,webp,avif,jpegxl,hevc_intra,balle2017,balle2018,theis2017,cheng2018,wcae,nowcae,jiang2017,prakash2017]
KODAK_REFERENCES ?= [jpeg,jpeg2000,bpg_444_x265_ycbcr]
# The BD anchors: the classic pair, and Ballé 2017 for the hyperprior models trained at its budget.
ANCHORS = [jpeg,jpeg2000,balle2017]
KODAK_DATA = data=kodak data.root=$(DATA)/kodak logger=none crop_image=kodim23
KODAK = $(VENV)/bin/licbench benchmark $(KODAK_DATA)
KODAK_SHARDS = $(VENV)/bin/licbench benchmark -m launcher=local data.shard=1/2,2/2 $(KODAK_DATA)
REPORT = $(VENV)/bin/licbench report dataset=kodak
leaderboard: kodak-main kodak-supplement kodak-toderici kodak-anchors kodak-coconet
# kodak-main: two image shards side by side on the local launcher (a thread each), merged into results/kodak.
kodak-main: install
	$(KODAK_SHARDS) codecs=$(KODAK_CODECS) references=$(KODAK_REFERENCES) anchors=$(ANCHORS) metrics=ctc \
	    out_dir=outputs/kodak-main
	$(REPORT) in_dir=outputs/kodak-main out_dir=results/kodak references=$(KODAK_REFERENCES) anchors=$(ANCHORS)
	$(PY) -m licbench.tools.screenshot results/kodak/leaderboard.html --out results/kodak/report.png
kodak-supplement: install
	$(KODAK) codecs=[jpeg,fmm,fmm_packed] out_dir=results/kodak-supplement
kodak-toderici: install
	$(KODAK) codecs=[jpeg,toderici2017,toderici2016] +codec_overrides.jpeg.grid=[10,20,30,50,75,90] \
	    +codec_overrides.toderici2017.points.iterations=[1,2,4,8,16] +codec_overrides.toderici2016.points.iterations=[1,16] out_dir=results/kodak-toderici

# The hyperprior anchors (Ballé 2018, Minnen 2018) at Ballé 2017's budget, beside it and CompressAI's own runs
# of the two architectures; kodak-anchors-report rebuilds its leaderboard.
ANCHOR_CODECS = [jpeg,jpeg2000,hevc_intra,balle2017,balle2018,minnen2018]
ANCHOR_REFERENCES = [bpg_444_x265_ycbcr,compressai-bmshj2018-hyperprior_mse_cuda,compressai-mbt2018-mean_mse_cuda]
kodak-anchors: install
	$(KODAK) codecs=$(ANCHOR_CODECS) references=$(ANCHOR_REFERENCES) anchors=$(ANCHORS) out_dir=results/kodak-anchors
kodak-anchors-report: install
	$(REPORT) in_dir=results/kodak-anchors references=$(ANCHOR_REFERENCES) anchors=$(ANCHORS)

# CocoNet's encode is a fit (~10-35 CPU-s per image and point): no timing pass. Its anchors: JPEG, and
# CocoNet's scalar quantizer, against which coconet_bgd shows what Stock et al.'s quantizer buys.
COCONET_ANCHORS = [jpeg,coconet]
kodak-coconet: install
	$(KODAK) codecs=[jpeg,coconet,coconet_bgd] anchors=$(COCONET_ANCHORS) out_dir=results/kodak-coconet threads=1 \
	    timing=off

kodak: leaderboard

kodak-report: install kodak-anchors-report
	$(REPORT) in_dir=results/kodak references=$(KODAK_REFERENCES) anchors=$(ANCHORS)
	$(PY) -m licbench.tools.screenshot results/kodak/leaderboard.html --out results/kodak/report.png
	$(REPORT) in_dir=results/kodak-supplement
	$(REPORT) in_dir=results/kodak-toderici
	$(REPORT) in_dir=results/kodak-coconet anchors=$(COCONET_ANCHORS)

# Speed figures (not tests): overheads against compressai and a bare PyTorch loop, the benchmark
# stage against compressai.utils.bench, and each codec's encode+decode time on one Kodak image.
TIMED_CODECS ?= jpeg,jpeg2000,webp,avif,fmm,balle2017,theis2017,cheng2018,wcae,nowcae,toderici2017,jiang2017
speed: install
	$(PY) -m licbench.tools.speed --image $(DATA)/kodak/kodim01.png --checkpoint $$(ls results/zoo/balle2017/*.ckpt | head -1) --out results/speed.md
	$(PY) -m licbench.tools.suite_speed --images $(DATA)/kodak --out results/suite_speed.md
	$(PY) -m licbench.tools.coding_time --image $(DATA)/kodak/kodim01.png --codecs $(TIMED_CODECS) --out results/coding_time.md
	$(PY) -m licbench.tools.toderici_speed --image $(DATA)/kodak/kodim01.png --large --out results/toderici_speed.md
# Training throughput per CPU-minute, float32 against bf16 autocast, and RD at equal steps on BSDS500 val
# (every method at 60 steps; Ballé 2017 and Theis 2017 again at 2,000, a fifth of their recipes' length).
train-speed: install
	$(PY) -m licbench.tools.train_speed --data $(DATA)/bsds500 --steps 60 --val-images 8 --out results/train_speed.md
	$(PY) -m licbench.tools.train_speed --data $(DATA)/bsds500 --methods balle2017,theis2017 --steps 2000 --val-images 16 \
	    --out results/train_speed_2000.md

# Stock et al.'s product quantization of Ballé 2017's synthesis transform, calibrated on BSDS500 train.
bgd-decoder: install
	$(PY) -m licbench.tools.bgd_decoder --checkpoint results/zoo/balle2017/balle2017-l0.013.ckpt \
	    --calibration $(DATA)/bsds500/train --images $(DATA)/kodak --out results/bgd_decoder.md

# The robustness tables (results/robustness/): the seeded fuzzer, odd images through the CLI, and
# cross-thread determinism (fresh decoders on 1 and 2 threads) over every codec; Toderici (~0.5 s per
# iteration and image) over the 24 Kodak images in its own table, CocoNet (a fit per encode) over 4.
ROBUST_CODECS = jpeg,jpeg2000,webp,avif,jpegxl,hevc_intra,prakash2017,fmm,fmm_packed,balle2017,balle2018,minnen2018,theis2017,cheng2018,wcae,nowcae,jiang2017
DETERMINISM = $(PY) -m licbench.tools.determinism --images $(DATA)/kodak --threads 1,2
robustness: fuzz odd-images determinism
fuzz: install
	$(PY) -m licbench.tools.fuzz --minutes 20 --codecs $(ROBUST_CODECS),toderici2017,toderici2016,coconet,coconet_bgd \
	    --out results/robustness/fuzz.md
odd-images: install
	$(PY) -m licbench.tools.oddimages --out results/robustness/odd_images.md
determinism: install
	$(DETERMINISM) --codecs $(ROBUST_CODECS) --out results/robustness/determinism.md
	$(DETERMINISM) --codecs toderici2017,toderici2016 --out results/robustness/determinism-toderici.md
	$(DETERMINISM) --codecs coconet,coconet_bgd --limit 4 --out results/robustness/determinism-coconet.md

clean:
	rm -rf outputs wandb .pytest_cache

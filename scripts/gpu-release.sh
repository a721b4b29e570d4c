#!/usr/bin/env bash
# The release's training (prune, recover, 7-bit control) on a lent GPU machine, which has PyTorch
# but not our data or two of our packages: the training crops travel as JPEG parts
# (detector.training.pack, one part per call), the packages as wheels in .whl. Export,
# quantization, the gate and evaluation run where the model serves (make release-from).
#
#   bash scripts/gpu-release.sh smoke            # packages, imports, GPU, step time
#   bash scripts/gpu-release.sh receive          # keep this call's part of the crops
#   bash scripts/gpu-release.sh run L_MIN C_MIN  # prune to $LEVELS, then the 7-bit control
#   bash scripts/gpu-release.sh run L_MIN 0      # prune to $LEVELS, the recovery on the 7-bit grid
#   bash scripts/gpu-release.sh recover C_MIN    # `make release-recover`'s training: the committed
#                                                # cut (lite0-pruned.pt) on the 7-bit grid
#                                                # distilled from 0.4.0's weights as 0.5.0 was
#                                                # (TEACHER= distils from the student instead)
#
# `run` and `recover` unpack the crops first unless they are there; two chains run side by side in
# one call when each is given its own TAG (its folder and log) and half the WORKERS, after one
# `unpack` (docs/experiments.md, 2026-12-06 fifth session).
#
# L_MIN bounds each level's recovery, C_MIN the control, in minutes (the cosines end by the
# clock: detector.training.prune --minutes); with C_MIN 0 there is no control, each level's
# recovery learns the 7-bit grid itself (prune --weight-bits 7) and pruned.pt is the candidate,
# so the whole call goes into recovery. The steps each took are in the checkpoints
# (pruning.recovery_steps) and the log. Weights and the log land in $OUT. Measured on an H200
# with 16 cores (2026-12-04): 24 ms a step at batch 32 on the GPU, 5.9 ms of augmentation a
# crop on one core, so two chains side by side ran 21 steps a second each. 0.4.0 is the chain
# LEVELS=0.365 with L_MIN 1.75 and C_MIN 2 (2,291 and 2,329 steps); its 0.64 level, finished on
# 2 CPU cores, was refused by the gate, and a one-hop chain to 0.64 did not reach its control
# inside one 10-minute call (docs/experiments.md, 2026-12-04).
set -uo pipefail
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT" /tmp/pack
export PYTHONUNBUFFERED=1
WEIGHTS=models/weights/lite0-student.pt
PY=${PY:-python3}           # (a local dry run: PY=.venv/bin/python DEVICE=cpu STEP_FT=1 WORKERS=1)
DEVICE=${DEVICE:-cuda}
WORKERS=${WORKERS:-14}       # augmentation processes (16 cores there)
STEP_FT=${STEP_FT:-40}
CACHE=.cache/gpu-crops     # the training split alone: never the prepared cache
LEVELS=${LEVELS:-0.365}     # the levels in turn, the last one kept (0.4.0: 0.365; a dry run: 0.04)
FINAL=${LEVELS##*,}
TAG=${TAG:-gpu}             # this chain's folder (.cache/$TAG), log ($OUT/$TAG.log) and weights ($OUT/$TAG-*.pt)
PRUNED=models/weights/lite0-pruned.pt
TEACHER=${TEACHER-models/weights/lite0-release.pt} # recover's teacher, make release-recover's (empty: the student)
LIMIT=${LIMIT:-540}         # seconds this chain may take: each stage is killed before the next one's share

for part in .gpu/crops/part-*; do [ -d "$part" ] && cp -r "$part" /tmp/pack/; done
ls /tmp/pack
if [ ! -d /tmp/site/torch_pruning ]; then
	python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD

unpack_once() { # the crops, decoded once per machine: chains side by side share them
	[ -f $CACHE/manifest.csv ] || $PY -m detector.training.pack /tmp/pack --unpack --cache $CACHE || exit 1
}

case "${1:-}" in
smoke)
	nproc; nvidia-smi --query-gpu=name,memory.total --format=csv
	python3 - <<'EOF'
import time, torch, torch_pruning, efficientnet_lite_pytorch, onnx, onnxruntime, cv2, numpy
from detector.training import pack, prune
from detector.training.model import load_checkpoint
from detector.training.losses import distillation_loss
print("torch", torch.__version__, "numpy", numpy.__version__, "cv2", cv2.__version__, "tp", torch_pruning.__version__)
dev = torch.device("cuda")
model, _ = load_checkpoint(__import__("pathlib").Path("models/weights/lite0-student.pt"))
teacher, _ = load_checkpoint(__import__("pathlib").Path("models/weights/lite0-student.pt"))
model.to(dev, memory_format=torch.channels_last).train(); teacher.to(dev, memory_format=torch.channels_last)
opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
x = torch.randn(32, 3, 224, 224, device=dev).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 2, (32, 1), device=dev).float()
for i in range(60):
    if i == 10:
        torch.cuda.synchronize(); t = time.time()
    with torch.no_grad():
        tl = teacher(x)
    loss = distillation_loss(model(x), y, tl, 0.5, 2.0)
    opt.zero_grad(); loss.backward(); opt.step()
torch.cuda.synchronize()
print(f"step {1000 * (time.time() - t) / 50:.1f} ms at batch 32")
import numpy as np
from detector.training.augment import augment
from detector.training.data import to_tensor
rng = np.random.default_rng(0)
img = rng.integers(0, 255, (224, 224, 3), dtype=np.uint8)
t = time.time()
for _ in range(200):
    to_tensor(augment(img, rng))
print(f"augment {1000 * (time.time() - t) / 200:.2f} ms per crop, one process")
EOF
	;;
receive) ;;
unpack)
	unpack_once
	;;
run)
	unpack_once
	C_MIN=$3
	GRID=8
	[ "$C_MIN" = 0 ] && GRID=7 # no control: the recovery learns the 7-bit grid
	timeout $((LIMIT - 60 * ${C_MIN%.*} - 60)) $PY -m detector.training.prune $WEIGHTS --out .cache/$TAG/hops \
		--cache $CACHE --levels "$LEVELS" --step-finetune $STEP_FT --level-finetune 50000 --minutes "$2" \
		--importance-batches 2 --no-start --no-videos --no-evaluate --workers $WORKERS --device $DEVICE \
		--weight-bits $GRID >"$OUT/$TAG.log" 2>&1
	# the final level only: an earlier hop's must not pass for it
	level=.cache/$TAG/hops/$($PY -c "from detector.training.prune import level_name; print(level_name($FINAL))")
	cp $level/model.pt "$OUT/$TAG-pruned.pt" || exit 1
	[ "$GRID" = 7 ] && { ls -la "$OUT"; exit 0; }
	timeout $((LIMIT - SECONDS - 5)) $PY -m detector.training.prune $level/model.pt --base $WEIGHTS \
		--out .cache/$TAG/control --cache $CACHE --control-steps 50000 --minutes "$C_MIN" --weight-bits 7 \
		--no-start --no-videos --no-evaluate --workers $WORKERS --device $DEVICE >>"$OUT/$TAG.log" 2>&1
	cp .cache/$TAG/control/control/model.pt "$OUT/$TAG-control.pt"
	ls -la "$OUT"
	;;
recover)
	unpack_once
	timeout $((LIMIT - SECONDS - 5)) $PY -m detector.training.prune $PRUNED --base $WEIGHTS \
		--out .cache/$TAG/control --cache $CACHE --control-steps 50000 --minutes "$2" --weight-bits 7 \
		--no-start --no-videos --no-evaluate --workers $WORKERS --device $DEVICE ${TEACHER:+--teacher "$TEACHER"} \
		>"$OUT/$TAG.log" 2>&1
	cp .cache/$TAG/control/control/model.pt "$OUT/$TAG-control.pt" || exit 1
	ls -la "$OUT"
	;;
*) echo "usage: $0 smoke|receive|unpack|run L_MIN C_MIN|recover C_MIN" >&2; exit 2 ;;
esac

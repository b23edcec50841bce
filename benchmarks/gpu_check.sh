#!/usr/bin/env bash
# Everything the GPU side of the trainer needs checked, in one short run (about 6 minutes on an
# H100/H200), for a machine that has torch, transformers, typer, rich, tokenizers, safetensors,
# pytest and hypothesis but cannot install anything (so no `pip install -e .`: the checkout is
# put on PYTHONPATH, and `datasets` is only needed for hf: corpora).
#
#   bash benchmarks/gpu_check.sh                 # results in ./gpu-results (or $OUT)
#   MODEL=tiny BATCH=4 SEQ=64 DEVICE=cpu bash benchmarks/gpu_check.sh   # a dry run on a CPU
#
# It writes env.txt (torch, CUDA, device), gpu-tests.log (`pytest -m gpu`), bench-eager.json and
# bench-compiled.json (benchmarks/train_throughput.py at base size, ours vs transformers, bf16,
# with MFU) and train.log (a short `objectives train --compile` run through the CLI). Each step
# has its own time limit, so one that hangs still leaves the others' results.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu-results}"
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
model="${MODEL:-base}" batch="${BATCH:-32}" seq="${SEQ:-512}" device="${DEVICE:-cuda}"
python3 - <<'EOF' 2>&1 | tee "$out/env.txt"
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__, "cuda", torch.version.cuda)
if torch.cuda.is_available():
    p = torch.cuda.get_device_properties(0)
    print("device", p.name, f"{p.total_memory / 2**30:.0f} GiB", f"sm_{p.major}{p.minor}",
          "bf16", torch.cuda.is_bf16_supported(), "flash", torch.backends.cuda.flash_sdp_enabled())
try:
    import transformers
    print("transformers", transformers.__version__)
except ImportError:
    print("transformers missing: the benchmark will fail")
EOF
timeout 240 python3 -m pytest -m gpu -rs -q -p no:cacheprovider tests \
    2>&1 | tee "$out/gpu-tests.log" | tail -n 25
for mode in eager compiled; do
    flag=$([ "$mode" = compiled ] && echo --compile)
    timeout 150 python3 benchmarks/train_throughput.py --model "$model" --batch "$batch" \
        --seq-len "$seq" --device "$device" --steps 10 --warmup 3 --json $flag \
        > "$out/bench-$mode.json" 2> "$out/bench-$mode.err"
    echo "bench $mode: exit $?"
    cat "$out/bench-$mode.json"
done
rm -rf "$out/run"
timeout 150 python3 -m objectives_cli train -o t5-span --model tiny --steps 60 --compile \
    --device "$device" --out "$out/run" 2>&1 | tee "$out/train.log" | tail -n 5
rm -rf "$out/run"

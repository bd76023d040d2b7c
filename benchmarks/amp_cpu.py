"""bf16 / fp16 against fp32 on the CPU: one training step of each model on its small example batch
(``tests/models/_model_batches.py``, batch 2, fixed seeds), the loss in each precision and the
relative difference to fp32 (docs/gpu.md quotes the table).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/amp_cpu.py [MODEL ...]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))
from _model_batches import all_models, example_batch  # noqa: E402

from torchssc.engine.placement import train_step  # noqa: E402


def step(name: str, amp: str) -> tuple[float, float]:
    ex = example_batch(name, batch_size=2)
    torch.manual_seed(0)
    model, loss_fn = ex.build()
    torch.manual_seed(1)
    t0 = time.perf_counter()
    total = train_step(model, loss_fn, ex.batch, torch.device("cpu"), amp=amp)["terms"]["total"]
    return total, time.perf_counter() - t0


def main() -> None:
    names = sys.argv[1:] or all_models()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    print("| model | fp32 loss | bf16 loss | bf16 rel. diff | fp16 loss | fp16 rel. diff | s (fp32 / bf16 / fp16) |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        (f32, t32), (b16, tb), (f16, th) = step(name, "none"), step(name, "bf16"), step(name, "fp16")
        print(f"| {name} | {f32:.5f} | {b16:.5f} | {abs(b16 - f32) / abs(f32):.1e} | {f16:.5f} | "
              f"{abs(f16 - f32) / abs(f32):.1e} | {t32:.1f} / {tb:.1f} / {th:.1f} |", flush=True)


if __name__ == "__main__":
    main()

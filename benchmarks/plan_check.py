"""``torchssc plan``'s estimate against the measured CPU peak (docs/gpu.md).

For each configuration: the plan's costs measured at batch 2, its estimate at batch B, and the
peak tensor memory of a real training step at batch B on the CPU
(:func:`torchssc.engine.plan.measured_step_bytes`: weights, optimiser state, inputs and the
profiler's allocation peak of forward + backward). Prints one markdown row per (config, B).

    PYTHONPATH=src OMP_NUM_THREADS=1 python benchmarks/plan_check.py [--quick]
"""

from __future__ import annotations

import sys
import time

from torchssc.config import load_config
from torchssc.engine.plan import estimate_bytes, measure_step, measured_step_bytes, recipe_variant

CONFIGS = [
    ("unet3d_prior_nyu_cpu", [], (4,)),
    ("sketch_aware_ssc_prior_nyu_cpu", [], (4,)),
]


def main() -> None:
    configs = CONFIGS[:1] if "--quick" in sys.argv else CONFIGS
    print("| recipe (overrides) | variant | batch | estimate (MiB) | measured (MiB) | error |")
    print("|---|---|---|---|---|---|")
    for recipe, overrides, batches in configs:
        cfg = load_config(recipe, overrides)
        t0 = time.perf_counter()
        cost = measure_step(cfg)
        v = recipe_variant(cost)
        for b in batches:
            est = estimate_bytes(cost, b, variant=v)
            got = measured_step_bytes(cfg, b)
            name = f"{recipe} ({' '.join(overrides)})" if overrides else recipe
            print(f"| {name} | {v} | {b} | {est / 2**20:.0f} | {got / 2**20:.0f} | {(est - got) / got:+.1%} |",
                  flush=True)
        print(f"<!-- {recipe}: {time.perf_counter() - t0:.0f} s -->", flush=True)


if __name__ == "__main__":
    main()

"""Which means of checking device placement without a GPU reach which model (docs/gpu.md).

For every registered model (small shapes, ``tests/models/_model_batches.py``) it tries:

* ``meta``: model and batch on the meta device, forward + loss + backward;
* ``fake_cuda``: ``FakeTensorMode`` with the model built under ``torch.device("cuda")``, forward
  + loss, then backward;
* ``shadow``: :func:`torchssc.engine.placement.check_placement` (training step + scoring step).

and prints one row per model: ``ok`` or the first line of the error.

    PYTHONPATH=src:tests/models OMP_NUM_THREADS=1 python benchmarks/placement_means.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "models"))
from _model_batches import all_models, example_batch  # noqa: E402

from torchssc.engine.placement import check_placement  # noqa: E402


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:90]}" if str(exc) else type(exc).__name__


def try_meta(name: str) -> str:
    ex = example_batch(name, batch_size=2)
    try:
        with torch.device("meta"):
            model, loss_fn = ex.build()
        batch = {k: v.to("meta") for k, v in ex.batch.items()}
        loss_fn(model(batch), batch)["total"].backward()
        return "ok"
    except Exception as exc:  # noqa: BLE001 - the point is to see what fails
        return _short(exc)


def try_fake_cuda(name: str) -> str:
    from torch._subclasses.fake_tensor import FakeTensorMode

    ex = example_batch(name, batch_size=2)
    stage = "build"
    try:
        with FakeTensorMode(allow_non_fake_inputs=False) as mode:
            with torch.device("cuda"):
                model, loss_fn = ex.build()
            batch = {k: mode.from_tensor(v).to("cuda") for k, v in ex.batch.items()}
            stage = "forward"
            terms = loss_fn(model(batch), batch)
            stage = "backward"
            terms["total"].backward()
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return f"{stage}: {_short(exc)}"


def try_shadow(name: str) -> str:
    ex = example_batch(name, batch_size=2)
    try:
        model, loss_fn = ex.build()
        check_placement(model, loss_fn, ex.batch)
        return "ok"
    except Exception as exc:  # noqa: BLE001
        return _short(exc)


def main() -> None:
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}")
    print("| model | meta | FakeTensorMode + cuda | shadow (placement.py) |")
    print("|---|---|---|---|")
    for name in all_models():
        if name == "forknet" and "--all" not in sys.argv:
            print("| forknet | (skipped: 79 M parameters; --all) | | |")
            continue
        print(f"| {name} | {try_meta(name)} | {try_fake_cuda(name)} | {try_shadow(name)} |", flush=True)


if __name__ == "__main__":
    main()

"""``torchssc weights [NAME] [--download]``: the named weights (docs/zoo.md).

Without NAME: one row per entry of the registry (the package's ``zoo/weights.yaml`` plus
``$TORCHSSC_WEIGHTS_REGISTRY``): name, model, dataset, the inputs it needs, its test figures
(SC IoU / SSC mIoU, protocol, split, how the checkpoint was chosen), size, sha256 (short) and
where the file comes from. With NAME: that entry in full; ``--download`` also fetches and checks
its file (``$TORCHSSC_HOME/weights``) and prints its path. ``--pack CHECKPOINT --out FILE
[--half]`` writes the zoo file of a training checkpoint (weights and recipe only) and prints the
registry's ``size`` and ``sha256`` lines for it.
"""

from __future__ import annotations

import argparse

from torchssc.report import markdown_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", default=None, metavar="NAME", help="one entry, shown in full")
    parser.add_argument("--download", action="store_true",
                        help="with NAME: download (or find in the cache) and check its file, print its path")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar while downloading")
    parser.add_argument("--pack", metavar="CHECKPOINT", default=None,
                        help="write the zoo file of a training checkpoint (weights and recipe only) to --out")
    parser.add_argument("--out", metavar="FILE", default=None, help="with --pack: the zoo file to write")
    parser.add_argument("--half", action="store_true", help="with --pack: store the weights as float16")


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def entries_table(registry: dict) -> str:
    """One markdown row per entry."""
    from torchssc.zoo import entry_inputs, weights_state

    rows = []
    for name, e in registry.items():
        f = e.figures
        rows.append([name, e.model, e.dataset, ", ".join(entry_inputs(e)), f"{f['sc_iou']:.1f} / {f['ssc_miou']:.1f}",
                     f"{f['protocol']}, {f['split']}", str(f["chosen"]), _size(e.size), e.sha256[:12],
                     weights_state(e)])
    return markdown_table(["name", "model", "dataset", "inputs", "SC IoU / SSC mIoU", "protocol, tested on",
                           "checkpoint chosen by", "size", "sha256", "source"], rows)


def describe(entry) -> str:
    """An entry in full, one ``key: value`` line each."""
    from torchssc.zoo import entry_inputs, weights_state
    from torchssc.zoo.resolve import entry_path

    f = entry.figures
    lines = [f"name: {entry.name}"]
    if entry.description:
        lines.append(f"description: {entry.description}")
    lines += [
        f"model: {entry.model}",
        f"dataset: {entry.dataset}",
        f"inputs: {', '.join(entry_inputs(entry))}",
        f"recipe: {entry.recipe}{' ' + ' '.join(entry.overrides) if entry.overrides else ''}",
        f"SC IoU / SSC mIoU: {f['sc_iou']:.1f} / {f['ssc_miou']:.1f} ({f['protocol']} protocol, {f['split']})",
        f"checkpoint chosen by: {f['chosen']}",
    ]
    lines += [f"{key}: {f[key]}" for key in ("precision", "command") if key in f]
    lines += [f"size: {entry.size:,} bytes", f"sha256: {entry.sha256}", f"source: {weights_state(entry)}"]
    if entry.url:
        lines.append(f"url: {entry.url}")
    lines += [f"file: {entry_path(entry)}", f"registry: {entry.source}"]
    return "\n".join(lines)


def pack(args: argparse.Namespace) -> int:
    """``--pack CHECKPOINT --out FILE [--half]``: write the file, print its registry lines."""
    from torchssc.zoo.pack import pack_weights

    if args.out is None or args.name is not None or args.download:
        raise ValueError("--pack CHECKPOINT needs --out FILE, and no NAME or --download")
    size, digest = pack_weights(args.pack, args.out, half=args.half)
    print(f"wrote {args.out}\nsize: {size}\nsha256: {digest}")
    return 0


def run(args: argparse.Namespace) -> int:
    from torchssc.zoo import find_entry, load_registry, registry_files, resolve_weights

    if args.pack is not None:
        return pack(args)
    registry = load_registry()
    if args.name is None:
        if args.download:
            raise ValueError("--download needs NAME (torchssc weights NAME --download)")
        if not registry:
            print(f"no named weights yet: the registry ({', '.join(map(str, registry_files()))}) has no entries")
            return 0
        print(entries_table(registry))
        return 0
    entry = find_entry(args.name, registry)
    print(describe(entry))
    if args.download:
        print(f"ready: {resolve_weights(args.name, registry, progress=not args.no_progress)}")
    return 0

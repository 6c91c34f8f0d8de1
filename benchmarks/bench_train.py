"""Training throughput of a generated project: does Lightning cost anything over a plain loop?

Paths, each training the project's MLP with the same batch size, optimizer,
loss, gradient clipping and precision (bf16 autocast on GPU, fp32 on CPU):

  raw            plain PyTorch loop over tensors resident on the device, batches sliced by index
  lightning      the project's path: BinaryClassifier + InMemoryDataModule + ResidentData in a
                 Trainer (logger=False, no checkpointing, no progress bar), validation off
  lightning+val  the same with validation every epoch, as the train stage runs it
  dataloader     the plain loop fed by a per-sample DataLoader(TensorDataset), for reference

Warm-up (one epoch; a few batches for the DataLoader) is never timed; on CUDA
the clock is read after torch.cuda.synchronize(). Samples/s counts training
rows only. The figure to watch is lightning / raw (target on GPU: >= 0.95).

    python benchmarks/bench_train.py --device cpu --rows 500000 --batch-size 4096
    python benchmarks/bench_train.py --device cuda --rows 2000000 --hidden-sizes 256 256   # on a GPU box
    python benchmarks/bench_train.py --ablations --count-syncs                             # why a gap
    python benchmarks/bench_train.py --startup 5     # what the train stage pays before its first batch
    python benchmarks/bench_train.py --stage-rows 1000000 10000000 --set trainer.max_epochs=1
                                     # the train stage itself (`dvc repro -f train`, twice) on big files:
                                     # time, rows/s, peak RSS of the stage, and whether model.pt repeats
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from common import (
    add_project_argument,
    bake,
    child_env,
    import_package,
    machine_line,
    package_name,
    resolve_project,
    run_child,
    table,
)
from torch import nn

PATHS = ("raw", "lightning", "lightning+val", "dataloader")
ABLATIONS = (
    "lightning:step-log-pbar",  # train/loss per step and epoch, prog_bar=True: one .item() per step
    "lightning:step-log-no-pbar",  # per step and epoch, prog_bar=False
    "lightning:epoch-log-only",  # per epoch only, prog_bar=False
    "lightning:no-log",  # no self.log in training_step
    "lightning:epoch-mean",  # loss summed on the device, one self.log per epoch
    "lightning:no-clip",  # gradient_clip_val off ...
    "raw:no-clip",  # ... and the same in the plain loop
    "lightning:deterministic",  # Trainer(deterministic=True), as conf/trainer/cpu.yaml sets it
    "lightning:k-steps",  # --inner-steps optimizer steps per Lightning batch (manual optimisation)
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_project_argument(parser)
    parser.add_argument("--rows", type=int, default=500_000, help="rows generated (the train split is 80%%)")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per run (after the warm-up)")
    parser.add_argument("--warmup-epochs", type=int, default=1)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--precision", choices=("auto", "32", "bf16"), default="auto",
                        help="auto: bf16 autocast on CUDA, fp32 on CPU")
    parser.add_argument("--paths", nargs="+", default=list(PATHS), choices=(*PATHS, *ABLATIONS))
    parser.add_argument("--ablations", action="store_true",
                        help="add Lightning variants that show where a gap comes from")
    parser.add_argument("--inner-steps", type=int, default=8,
                        help="optimizer steps per Lightning batch in the lightning:k-steps variant")
    parser.add_argument("--dataloader-epochs", type=int, default=1, help="timed epochs for the slow path")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers for the reference path")
    parser.add_argument("--hidden-sizes", type=int, nargs="+", default=None,
                        help="MLP widths (default: the project's model.hidden_sizes)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per path, interleaved; the median is shown")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    parser.add_argument("--count-syncs", action="store_true",
                        help="count device->host reads (aten::_local_scalar_dense) per step in each path")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    parser.add_argument("--startup", type=int, default=0, metavar="N",
                        help="instead of training: import the train stage's modules in N fresh interpreters")
    parser.add_argument("--stage-rows", type=int, nargs="+", default=None, metavar="N",
                        help="instead of the throughput paths: run the train stage on N generated rows")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="config overrides for --stage-rows, composed into params.yaml (e.g. trainer.max_epochs=1)")
    parser.add_argument("--stage-runs", type=int, default=2,
                        help="forced runs of the train stage per size (the second on shows whether model.pt repeats)")
    args = parser.parse_args(argv)
    if args.ablations:
        args.paths = list(dict.fromkeys([*args.paths, *ABLATIONS]))
    return args


@dataclass
class Timing:
    """One timed run: training samples processed, wall-clock and process CPU seconds."""

    samples: int
    wall_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        return self.samples / self.wall_s

    @property
    def cpu_rate(self) -> float:
        return self.samples / self.cpu_s


class Stopwatch:
    """Wall and CPU clocks, read after the device has finished its queued work."""

    def __init__(self, sync: Callable[[], None]) -> None:
        self.sync = sync

    def start(self) -> None:
        self.sync()
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self, samples: int) -> Timing:
        self.sync()
        return Timing(samples, time.perf_counter() - self.wall, time.process_time() - self.cpu)


class Setup:
    """Everything the paths share: device, precision, data, the project's classes and hyperparameters."""

    def __init__(self, args: argparse.Namespace, project: Path) -> None:
        from omegaconf import OmegaConf

        package = import_package(project)
        name = package.__name__
        self.model_module = importlib.import_module(f"{name}.training.model")
        self.training = importlib.import_module(f"{name}.training.train")
        datamodule = importlib.import_module(f"{name}.training.datamodule")
        dataset = importlib.import_module(f"{name}.data")

        if args.device == "auto":
            args.device = "cuda" if torch.cuda.is_available() else "cpu"
        if args.device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("--device cuda but torch sees no CUDA device")
        self.device = torch.device(args.device)
        self.bf16 = args.precision == "bf16" or (args.precision == "auto" and args.device == "cuda")
        params = OmegaConf.load(project / "params.yaml")
        model_cfg = OmegaConf.to_container(params.model, resolve=True)
        assert isinstance(model_cfg, dict)
        self.model_cfg: dict[str, Any] = {str(key): value for key, value in model_cfg.items()}
        if args.hidden_sizes:
            self.model_cfg["hidden_sizes"] = list(args.hidden_sizes)
        self.clip = float(params.trainer.get("gradient_clip_val") or 0.0)
        self.args = args
        torch.set_float32_matmul_precision("high")  # as the train stage does

        started = time.perf_counter()
        frame = dataset.sample_rows(args.rows, seed=args.seed)
        self.datamodule = datamodule.InMemoryDataModule(frame, args.batch_size,
                                                            float(params.data.val_fraction), args.seed)
        self.prepare_s = time.perf_counter() - started
        self.train_x, self.train_y = self.datamodule.train_x.clone(), self.datamodule.train_y.clone()
        self.n_train = len(self.train_y)
        self.steps_per_epoch = -(-self.n_train // args.batch_size)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def module(self, cls: type | None = None, **extra: Any) -> Any:
        """The project's BinaryClassifier (or a variant) built from params.yaml's `model`, as train() does."""
        from hydra.utils import instantiate

        # Nodes with their own _target_ (the optimizer and scheduler partials) are built as train() builds them.
        kwargs = {
            key: instantiate(value) if isinstance(value, dict) and "_target_" in value else value
            for key, value in self.model_cfg.items()
            if key != "_target_"
        }
        kwargs["in_features"] = self.datamodule.n_features
        if "pos_weight" not in kwargs and hasattr(self.datamodule, "pos_weight"):
            kwargs["pos_weight"] = self.datamodule.pos_weight  # older projects took it from the data
        torch.manual_seed(self.args.seed)
        return (cls or self.model_module.BinaryClassifier)(**kwargs, **extra)

    def plain_parts(self) -> tuple[nn.Module, torch.optim.Optimizer, torch.Tensor]:
        """The project's MLP (`.network`), the optimizer its module configures, and its pos_weight."""
        module = self.module().to(self.device)
        optimizers = module.configure_optimizers()
        if isinstance(optimizers, dict):
            optimizers = optimizers["optimizer"]
        if isinstance(optimizers, (list, tuple)):
            optimizers = optimizers[0]
        return module.network.train(), optimizers, module.pos_weight


# ---------------------------------------------------------------- plain PyTorch
def make_step(setup: Setup, clip: float) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """One optimisation step, in the order Lightning's automatic optimisation uses."""
    network, optimizer, pos_weight = setup.plain_parts()
    parameters = list(network.parameters())

    def step(features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        with setup.autocast():
            logits = network(features).squeeze(-1)
        loss = nn.functional.binary_cross_entropy_with_logits(logits.float(), labels, pos_weight=pos_weight)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(parameters, clip)
        optimizer.step()
        return loss.detach()

    return step


def resident_epoch(setup: Setup, x: torch.Tensor, y: torch.Tensor, step: Callable[..., torch.Tensor],
                   epoch: int) -> None:
    """Shuffle indices, slice batches out of resident tensors: what ResidentBatches does."""
    generator = torch.Generator().manual_seed(setup.args.seed + epoch)
    order = torch.randperm(len(y), generator=generator).to(setup.device)
    running = torch.zeros((), device=setup.device)
    for start in range(0, len(order), setup.args.batch_size):
        index = order[start : start + setup.args.batch_size]
        running += step(x[index], y[index])  # a running loss, kept on the device like self.log's


def run_raw(setup: Setup, clip: float) -> Timing:
    x, y = setup.train_x.to(setup.device), setup.train_y.to(setup.device)
    step = make_step(setup, clip)
    for epoch in range(setup.args.warmup_epochs):
        resident_epoch(setup, x, y, step, epoch)
    watch = Stopwatch(setup.sync)
    watch.start()
    for epoch in range(setup.args.warmup_epochs, setup.args.warmup_epochs + setup.args.epochs):
        resident_epoch(setup, x, y, step, epoch)
    return watch.stop(setup.n_train * setup.args.epochs)


def run_dataloader(setup: Setup) -> Timing:
    from torch.utils.data import DataLoader, TensorDataset

    cuda = setup.device.type == "cuda"
    loader = DataLoader(TensorDataset(setup.train_x, setup.train_y), batch_size=setup.args.batch_size,
                        shuffle=True, num_workers=setup.args.workers, pin_memory=cuda,
                        persistent_workers=setup.args.workers > 0,
                        generator=torch.Generator().manual_seed(setup.args.seed))
    step = make_step(setup, setup.clip)

    def epoch(limit: int | None = None) -> None:
        for i, (features, labels) in enumerate(loader):
            if limit is not None and i >= limit:
                break
            step(features.to(setup.device, non_blocking=True), labels.to(setup.device, non_blocking=True))

    epoch(limit=10)  # warm-up: a few batches (workers started, kernels chosen)
    watch = Stopwatch(setup.sync)
    watch.start()
    for _ in range(setup.args.dataloader_epochs):
        epoch()
    return watch.stop(setup.n_train * setup.args.dataloader_epochs)


# ---------------------------------------------------------------- Lightning
def lightning_classes(setup: Setup) -> dict[str, type]:
    """The project's BinaryClassifier, and variants that differ only in how a training step logs or steps."""
    base = setup.model_module.BinaryClassifier

    def logging_variant(doc: str, **log_options: Any) -> type:
        class Variant(base):  # type: ignore[misc, valid-type]
            __doc__ = doc

            def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
                features, labels = batch
                loss = self._loss(self(features), labels)
                if log_options:
                    self.log("train/loss", loss, batch_size=len(labels), **log_options)
                return loss

        return Variant

    class EpochMean(base):  # type: ignore[misc, valid-type]
        """The mean training loss summed on the device, one self.log per epoch instead of one per step."""

        def on_train_epoch_start(self) -> None:
            self.loss_sum = torch.zeros((), device=self.device)
            self.rows = 0

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            features, labels = batch
            loss = self._loss(self(features), labels)
            self.loss_sum += loss.detach() * len(labels)
            self.rows += len(labels)
            return loss

        def on_train_epoch_end(self) -> None:
            self.log("train/loss", self.loss_sum / max(self.rows, 1), prog_bar=True)

    class MultiStep(base):  # type: ignore[misc, valid-type]
        """Manual optimisation: each Lightning batch is `inner_steps` mini-batches, one optimizer step each.

        Lightning's per-batch loop cost is paid once per `inner_steps` optimizer steps.
        """

        def __init__(self, *args: Any, inner_steps: int, batch_size: int, clip: float, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.automatic_optimization = False
            self.inner_steps, self.mini_batch, self.clip = inner_steps, batch_size, clip

        def training_step(self, batch: Any, batch_idx: int) -> None:
            features, labels = batch
            optimizer = self.optimizers()
            total = torch.zeros((), device=features.device)
            for x, y in zip(features.split(self.mini_batch), labels.split(self.mini_batch), strict=True):
                loss = self._loss(self(x), y)
                optimizer.zero_grad(set_to_none=True)
                self.manual_backward(loss)
                if self.clip:
                    self.clip_gradients(optimizer, gradient_clip_val=self.clip, gradient_clip_algorithm="norm")
                optimizer.step()
                total += loss.detach()
            self.log("train/loss", total / self.inner_steps, on_step=False, on_epoch=True, batch_size=len(labels))

    return {
        "": base,
        "step-log-pbar": logging_variant("per-step and per-epoch train/loss, on the progress bar",
                                         on_step=True, on_epoch=True, prog_bar=True),
        "epoch-log-only": logging_variant("per-epoch train/loss, off the progress bar",
                                          on_step=False, on_epoch=True, prog_bar=False),
        "step-log-no-pbar": logging_variant("per-step and per-epoch train/loss, off the progress bar",
                                            on_step=True, on_epoch=True, prog_bar=False),
        "no-log": logging_variant("no self.log in training_step"),
        "epoch-mean": EpochMean,
        "k-steps": MultiStep,
    }


def run_lightning(setup: Setup, variant: str = "", validate: bool = False, clip: float | None = None,
                  deterministic: bool = False) -> Timing:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import Callback

    args = setup.args
    total_epochs = args.warmup_epochs + args.epochs
    watch = Stopwatch(setup.sync)

    class Clock(Callback):
        """Start after the warm-up epochs, stop at the end of the last epoch (validation included)."""

        def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.current_epoch == args.warmup_epochs:
                watch.start()

        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.current_epoch == total_epochs - 1:
                self.timing = watch.stop(setup.n_train * args.epochs)

    clip = setup.clip if clip is None else clip
    extra: dict[str, Any] = {}
    datamodule = setup.datamodule
    if variant == "k-steps":
        extra = {"inner_steps": args.inner_steps, "batch_size": args.batch_size, "clip": clip}
        clip = 0.0  # clipped inside the step: Lightning refuses gradient_clip_val with manual optimisation
        datamodule.batch_size = args.batch_size * args.inner_steps
    model = setup.module(lightning_classes(setup)[variant], **extra)
    clock = Clock()
    try:
        with tempfile.TemporaryDirectory() as root:
            trainer = pl.Trainer(
                accelerator="gpu" if setup.device.type == "cuda" else "cpu", devices=1,
                precision="bf16-mixed" if setup.bf16 else "32-true", max_epochs=total_epochs,
                logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                num_sanity_val_steps=0, limit_val_batches=1.0 if validate else 0,
                gradient_clip_val=clip or None, deterministic=deterministic,
                callbacks=[setup.training.ResidentData(), clock], default_root_dir=root,
            )
            trainer.fit(model, datamodule=datamodule)
    finally:
        datamodule.batch_size = args.batch_size
    return clock.timing


# ---------------------------------------------------------------- driver
def runner(setup: Setup, path: str) -> Callable[[], Timing]:
    return {
        "raw": lambda: run_raw(setup, setup.clip),
        "raw:no-clip": lambda: run_raw(setup, 0.0),
        "lightning": lambda: run_lightning(setup),
        "lightning+val": lambda: run_lightning(setup, validate=True),
        "lightning:step-log-pbar": lambda: run_lightning(setup, "step-log-pbar"),
        "lightning:epoch-mean": lambda: run_lightning(setup, "epoch-mean"),
        "lightning:epoch-log-only": lambda: run_lightning(setup, "epoch-log-only"),
        "lightning:no-log": lambda: run_lightning(setup, "no-log"),
        "lightning:no-clip": lambda: run_lightning(setup, clip=0.0),
        "lightning:step-log-no-pbar": lambda: run_lightning(setup, "step-log-no-pbar"),
        "lightning:deterministic": lambda: run_lightning(setup, deterministic=True),
        "lightning:k-steps": lambda: run_lightning(setup, "k-steps"),
        "dataloader": lambda: run_dataloader(setup),
    }[path]


def count_syncs(setup: Setup, path: str) -> float:
    """Device->host scalar reads per training step (each one stalls a GPU pipeline)."""
    from torch.profiler import ProfilerActivity, profile

    args = setup.args
    saved = args.warmup_epochs, args.epochs, args.dataloader_epochs
    args.warmup_epochs, args.epochs, args.dataloader_epochs = 0, 1, 1
    try:
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            runner(setup, path)()
    finally:
        args.warmup_epochs, args.epochs, args.dataloader_epochs = saved
    reads = sum(e.count for e in prof.key_averages() if e.key == "aten::_local_scalar_dense")
    warmup_batches = min(10, setup.steps_per_epoch) if path == "dataloader" else 0
    return reads / (setup.steps_per_epoch + warmup_batches)


def quiet_lightning() -> None:
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module="lightning")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")


def report(setup: Setup, results: dict[str, list[Timing]], syncs: dict[str, float]) -> None:
    args = setup.args
    best = {path: max(t.rate for t in runs) for path, runs in results.items()}
    best_cpu = {path: max(t.cpu_rate for t in runs) for path, runs in results.items()}
    raw, raw_cpu = best.get("raw"), best_cpu.get("raw")
    rows = []
    for path, runs in results.items():
        step_us = args.batch_size / best[path] * 1e6
        cpu_step_us = args.batch_size / best_cpu[path] * 1e6
        rows.append([
            path, f"{best[path] / 1e6:.3f} M", f"{statistics.median(t.rate for t in runs) / 1e6:.3f} M",
            f"{step_us:,.0f}", f"{best[path] / raw:.3f}" if raw else "",
            f"{best_cpu[path] / 1e6:.3f} M", f"{cpu_step_us:,.0f}",
            f"{cpu_step_us - args.batch_size / raw_cpu * 1e6:+,.0f}" if raw_cpu else "",
            f"{best_cpu[path] / raw_cpu:.3f}" if raw_cpu else "",
            f"{syncs[path]:.2f}" if path in syncs else "",
        ])
    print(f"\ntraining throughput on {setup.device.type} "
          f"({'bf16 autocast' if setup.bf16 else 'fp32'}), MLP {setup.datamodule.n_features}-"
          f"{'-'.join(map(str, setup.model_cfg['hidden_sizes']))}-1, batch {args.batch_size}, "
          f"{setup.n_train:,} train rows ({setup.steps_per_epoch} steps/epoch), {args.epochs} timed epochs "
          f"after {args.warmup_epochs} warm-up, grad clip {setup.clip or 'off'}, best and median of "
          f"{args.repeats} runs; 'per CPU-s' divides by the process's CPU time, which other load on the "
          f"machine disturbs less than the wall clock")
    headers = ["path", "samples/s best", "median", "us/step", "x raw", "samples per CPU-s", "CPU us/step",
               "CPU us/step vs raw", "x raw (CPU)", "scalar reads/step"]
    print(table(headers, rows))
    if raw and raw_cpu and "lightning" in best:
        note = "" if setup.device.type == "cuda" else " (measured on CPU; the >= 0.95 target is for GPU)"
        print(f"\nLightning / raw = {best['lightning'] / raw:.3f} wall, "
              f"{best_cpu['lightning'] / raw_cpu:.3f} CPU time{note}")
    if syncs:
        print("scalar reads/step: aten::_local_scalar_dense calls (.item(), float(), bool() on a tensor). On a GPU "
              "each read of a device tensor stalls the host until the device catches up; the optimizer's own "
              "reads of its CPU-side step counters (one per parameter tensor) do not.")


STARTUP_MODULES = ("torch", "lightning", "pandas", "pandera", "hydra", "mlflow")


def import_costs(project: Path) -> dict[str, float]:
    """Seconds to import the train stage's library module in a fresh interpreter, and the heavy parts of it.

    Cumulative figures from `python -X importtime`; a module counted under another is not counted twice
    in the total, which is the wall time of the whole import.
    """
    module = f"{package_name(project)}.training"
    code = f"import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=project, env=child_env(project),
                          capture_output=True, text=True, check=True)
    costs = {"total": float(done.stdout.strip())}
    for line in done.stderr.splitlines():
        fields = [field.strip() for field in line.removeprefix("import time:").split("|")]
        if len(fields) == 3 and fields[2] in STARTUP_MODULES:
            costs[fields[2]] = int(fields[1]) / 1e6
    return costs


def startup(args: argparse.Namespace, project: Path) -> int:
    """Median import costs over --startup fresh interpreters (the first warms the file cache, not counted)."""
    import_costs(project)
    runs = [import_costs(project) for _ in range(args.startup)]
    names = ["total", *[name for name in STARTUP_MODULES if all(name in run for run in runs)]]
    print(f"project {project}\n{machine_line()}, load average {os.getloadavg()[0]:.1f}")
    print(table(["import", "median s", "min s"],
                [[name, f"{statistics.median(r[name] for r in runs):.2f}", f"{min(r[name] for r in runs):.2f}"]
                 for name in names]))
    if args.json:
        args.json.write_text(json.dumps({"startup": runs}, indent=2) + "\n")
    return 0


GENERATE_CHUNK_ROWS = 1_000_000


# Run in the workspace's own interpreter environment: each size is a fresh bake, and this process may
# already have imported another bake's package. Chunks of GENERATE_CHUNK_ROWS: never the whole file in memory.
WRITE_RAW_ROWS = """
import sys, pyarrow as pa, pyarrow.parquet as pq
from {package}.data.generate import generate_transactions
path, rows, seed, chunk_rows = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
writer = None
for chunk, start in enumerate(range(0, rows, chunk_rows)):
    table = pa.Table.from_pandas(generate_transactions(min(chunk_rows, rows - start), seed=seed + chunk),
                                 preserve_index=False)
    writer = writer or pq.ParquetWriter(path, table.schema)
    writer.write_table(table)
writer.close()
"""


def write_raw_rows(project: Path, path: Path, rows: int, seed: int) -> None:
    """`rows` generated transactions written chunk by chunk (seed + chunk number each), in a child process."""
    path.parent.mkdir(parents=True, exist_ok=True)
    code = WRITE_RAW_ROWS.format(package=package_name(project))
    command = [sys.executable, "-c", code, str(path), str(rows), str(seed), str(GENERATE_CHUNK_ROWS)]
    subprocess.run(command, cwd=project, env=child_env(project), check=True)


def stage_workspace(args: argparse.Namespace, scratch: Path, rows: int) -> Path:
    """A fresh default bake (git and DVC set up by the template's hook), with `rows` raw rows and --set applied."""
    workspace = bake(scratch / f"stage-{rows}")
    write_raw_rows(workspace, workspace / "data" / "raw" / "transactions.parquet", rows, args.seed)
    env = child_env(workspace)
    if args.set:
        subprocess.run([sys.executable, "tools/params.py", *args.set], cwd=workspace, env=env, check=True)
    return workspace


def stage_runs(args: argparse.Namespace, scratch: Path) -> int:
    """The train stage as DVC runs it, on files too big to hold: wall time, rows/s, the stage's peak RSS.

    `dvc repro validate` runs first, untimed here (bench_validate measures it). Each train run is
    `dvc repro --force --single-item train`; wait4 on the dvc process gives the peak RSS of the largest
    process in its tree (dvc or the stage it ran), which is the stage's. model.pt's md5 after every run
    shows whether a forced rerun gives the same bytes.
    """
    from omegaconf import OmegaConf

    print(f"{machine_line()}, load average {os.getloadavg()[0]:.1f}", flush=True)
    results, identical = [], True
    for rows in args.stage_rows:
        workspace = stage_workspace(args, scratch, rows)
        env = child_env(workspace)
        params = OmegaConf.load(workspace / "params.yaml")
        path = "in memory" if rows <= int(params.data.in_memory_max_rows) else "streamed"
        epochs = int(params.trainer.max_epochs)
        validated = run_child(["dvc", "repro", "validate"], workspace, env, scratch / "logs" / f"validate-{rows}")
        if validated.returncode != 0:
            raise SystemExit(f"dvc repro validate failed on {rows:,} rows:\n{validated.stderr[-3000:]}")
        digests = []
        for attempt in range(args.stage_runs):
            logs = scratch / "logs" / f"train-{rows}-{attempt}"
            done = run_child(["dvc", "repro", "--force", "--single-item", "train"], workspace, env, logs)
            if done.returncode != 0:
                raise SystemExit(f"dvc repro train failed on {rows:,} rows:\n{done.stderr[-3000:]}")
            digests.append(hashlib.md5((workspace / "models" / "model.pt").read_bytes()).hexdigest())
            train_rows = json.loads((workspace / "reports" / "train_metrics.json").read_text())["train_rows"]
            print(f"  {rows:,} rows ({path}), run {attempt + 1}: {done.wall_s:.1f}s ({done.cpu_s:.1f} CPU-s), "
                  f"peak RSS {done.peak_rss_mib:,.0f} MiB, model.pt {digests[-1]}", flush=True)
            results.append({"rows": rows, "path": path, "epochs": epochs, "train_rows": train_rows,
                            "wall_s": done.wall_s, "cpu_s": done.cpu_s, "peak_rss_mib": done.peak_rss_mib,
                            "model_md5": digests[-1]})
        identical = identical and len(set(digests)) == 1
        shutil.rmtree(workspace.parent)  # gigabytes at 10M rows: one size on disk at a time
    print(f"\ntrain stage (`dvc repro --force --single-item train`), {args.stage_runs} runs per size, "
          f"overrides {args.set or 'none'}; rows/s = file rows x epochs / stage wall time (start-up, the "
          f"fitting pass, validation and MLflow logging included)")
    print(table(["rows", "path", "epochs", "run", "stage s", "CPU s", "rows/s", "peak RSS MiB", "model.pt md5"],
                [[f"{r['rows']:,}", r["path"], r["epochs"], i % args.stage_runs + 1, f"{r['wall_s']:.1f}",
                  f"{r['cpu_s']:.1f}", f"{r['rows'] * r['epochs'] / r['wall_s'] / 1e6:.3f} M",
                  f"{r['peak_rss_mib']:,.0f}", r["model_md5"][:12]] for i, r in enumerate(results)]))
    print(f"model.pt identical on every forced rerun: {'yes' if identical else 'NO'}; "
          f"load average {os.getloadavg()[0]:.1f} at the end")
    if args.json:
        args.json.write_text(json.dumps({"stage": results}, indent=2) + "\n")
    return 0 if identical else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench-train-") as scratch:
        if args.stage_rows:
            return stage_runs(args, Path(scratch))
        project = resolve_project(args.project, Path(scratch))
        if args.startup:
            return startup(args, project)
        setup = Setup(args, project)
        import lightning

        quiet_lightning()  # after the import: lightning sets its own log level when imported
        print(f"project {project}\n{machine_line()}, torch threads {torch.get_num_threads()}, "
              f"device {torch.cuda.get_device_name() if setup.device.type == 'cuda' else 'cpu'}, "
              f"load average {os.getloadavg()[0]:.1f}")
        if setup.device.type == "cpu" and os.getloadavg()[0] > (os.cpu_count() or 1) and torch.get_num_threads() > 1:
            print("note: the machine is busy; several torch threads on shared cores wait on each other. "
                  "--threads 1 gives steadier CPU figures.")
        print(f"data: {args.rows:,} rows generated and preprocessed in {setup.prepare_s:.1f}s "
              f"(lightning {lightning.__version__})", flush=True)
        results: dict[str, list[Timing]] = {path: [] for path in args.paths}
        for repeat in range(args.repeats):
            for path in args.paths:  # interleaved, so drift in machine load spreads over every path
                timing = runner(setup, path)()
                results[path].append(timing)
                print(f"  run {repeat + 1}/{args.repeats} {path}: {timing.rate / 1e6:.3f} M samples/s "
                      f"({timing.cpu_rate / 1e6:.3f} M per CPU-s)", flush=True)
        syncs = {path: count_syncs(setup, path) for path in args.paths} if args.count_syncs else {}
        report(setup, results, syncs)
        print(f"load average {os.getloadavg()[0]:.1f} at the end")
        if args.json:
            args.json.write_text(json.dumps({
                "device": setup.device.type, "bf16": setup.bf16, "args": {k: str(v) for k, v in vars(args).items()},
                "runs": {path: [vars(t) for t in runs] for path, runs in results.items()},
                "scalar_reads_per_step": syncs}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

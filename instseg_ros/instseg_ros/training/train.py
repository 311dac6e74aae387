"""Train YOLACT on a COCO-format dataset: ``instseg-train --data DIR --out DIR``.

Checkpoints (``<out>/<preset>_<epoch>_<iteration>.pth``) hold only the model's flat state dict in the
official layout, so they load strictly with :func:`instseg_ros.core.checkpoint.load_model` (the file
name names the preset). Next to each one:

* ``<stem>.json``: class names (label order), category ids, preset, num_classes, input size,
  iteration, epoch, the training configuration and the last running losses;
* ``<stem>.optim.pt``: SGD state and iteration, used by ``--resume``.

``<out>/train_log.csv`` records the losses and learning rate of every iteration.

Schedule: SGD (momentum 0.9, weight decay 5e-4), linear warm-up from ``lr * warmup_factor`` over
``warmup_iters``, then the learning rate is multiplied by ``gamma`` at each ``lr_steps`` fraction of
the iterations. The backbone starts from a seeded random init (no pretrained weights offline);
BatchNorm trains with batch statistics, so batches of 8+ images are advisable.

Determinism: weights are initialised from a local ``torch.Generator``, the data stream and its
augmentations depend only on the seed and the iteration (see :mod:`.data`), and the trained-mask
subsets use a per-iteration generator, so a run repeats exactly on the same machine/device and a
resumed run continues the same stream. ``--deterministic`` additionally enables
``torch.use_deterministic_algorithms`` (useful on CUDA).
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, NamedTuple, Sequence

import torch
from torch import nn

from instseg_ros.core.checkpoint import load_state_dict_file, save_checkpoint
from instseg_ros.core.config import ModelConfig, get_preset
from instseg_ros.core.models.yolact.yolact import Yolact, init_weights_
from instseg_ros.training.data import AugmentConfig, CocoInstanceDataset, make_loader
from instseg_ros.training.losses import LossConfig, compute_losses
from instseg_ros.cli_help import DefaultsHelpFormatter

LOSS_NAMES = ('box', 'conf', 'mask', 'semantic', 'maskiou')


@dataclass
class TrainConfig:
    """Everything a training run needs (the CLI flags map 1:1 onto these fields).

    Attributes:
        data: dataset folder with ``instances.json`` (image ``file_name`` relative to it or to ``images/``),
            or the json file itself.
        out: output folder for checkpoints and logs.
        preset: model preset; num_classes comes from the dataset (+1 background).
        iterations: total optimizer steps (including those done before a resume).
        batch_size, lr, momentum, weight_decay: SGD settings. The default lr suits the random-init start
            (on yolact_small, batch 8, 1e-2 beat 4e-3 and YOLACT's 1e-3 over the first 80 iterations);
            use ~1e-3 (YOLACT's value) when fine-tuning from ``init`` weights.
        warmup_iters, warmup_factor: linear warm-up from ``lr * warmup_factor`` to ``lr``.
        lr_steps, gamma: step decay by ``gamma`` at these fractions of ``iterations``.
        seed: seeds weights, data order, augmentation and mask sampling.
        device: 'cpu', 'cuda', 'cuda:1', ...
        resume: checkpoint ``.pth`` to continue from (its ``.json`` / ``.optim.pt`` side-cars are used).
        init: checkpoint to start from instead of the random init (e.g. official COCO weights of the same
            preset, to fine-tune on other classes); tensors whose shape differs keep their random init.
        save_every: also save every N iterations (0: only at the end).
        threads: torch intra-op CPU threads (None: leave torch's default).
        num_workers: data-loader worker processes (0: load in the main process).
        augment: random flip, photometric jitter and crop.
        log_every: print a progress line every N iterations.
        grad_clip: max global gradient norm (None: no clipping); guards the random-init start.
        input_size: override the preset's input side (anchors scale with it). For tests/experiments:
            the reloaded checkpoint runs at the preset's size.
        image_dir: image folder if not next to the json.
        loss: matching thresholds and loss weights.
    """

    data: str
    out: str = 'runs/train'
    preset: str = 'yolact_small'
    iterations: int = 1000
    batch_size: int = 8
    lr: float = 1e-2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    warmup_iters: int = 50
    warmup_factor: float = 0.1
    lr_steps: tuple[float, ...] = (0.7, 0.9)
    gamma: float = 0.1
    seed: int = 0
    device: str = 'cpu'
    resume: str | None = None
    init: str | None = None
    save_every: int = 0
    threads: int | None = None
    num_workers: int = 0
    augment: bool = True
    log_every: int = 10
    grad_clip: float | None = 10.0
    input_size: int | None = None
    image_dir: str | None = None
    loss: LossConfig = field(default_factory=LossConfig)


def lr_at(iteration: int, cfg: TrainConfig) -> float:
    """Learning rate of 0-based ``iteration``: linear warm-up, then step decay at ``lr_steps`` fractions."""
    if iteration < cfg.warmup_iters:
        alpha = iteration / max(cfg.warmup_iters, 1)
        return cfg.lr * (cfg.warmup_factor + (1.0 - cfg.warmup_factor) * alpha)
    drops = sum(iteration >= int(round(f * cfg.iterations)) for f in cfg.lr_steps)
    return cfg.lr * cfg.gamma ** drops


def model_config(cfg: TrainConfig, num_classes: int) -> ModelConfig:
    """Preset with the dataset's class count (incl. background) and the optional input-size override
    (pixel anchor scales are scaled along, so relative anchors stay those of the preset)."""
    model_cfg = get_preset(cfg.preset, num_classes=num_classes)
    if cfg.input_size is None or cfg.input_size == model_cfg.max_size:
        return model_cfg
    ratio = cfg.input_size / model_cfg.max_size
    scales = tuple(tuple(s * ratio for s in level) for level in model_cfg.pred_scales)
    return replace(model_cfg, max_size=int(cfg.input_size), pred_scales=scales)


def init_for_training(model: Yolact, seed: int) -> Yolact:
    """Seeded random init (``init_weights_``) of every weight, in place; returns ``model``.

    YOLACT++: the mask-IoU net ends in a ReLU, which at a random init is often dead (output 0, no
    gradient) for some or all classes; its last bias starts at 0.5 (mid-range of the IoU target) so
    every class output is active and trainable.
    """
    init_weights_(model, torch.Generator().manual_seed(int(seed)))
    if model.cfg.use_maskiou:
        last = [m for m in model.maskiou_net.modules() if isinstance(m, nn.Conv2d)][-1]
        with torch.no_grad():
            last.bias.fill_(0.5)
    return model


def load_matching_weights(model: nn.Module, path: str | Path) -> tuple[int, list[str]]:
    """Copy the tensors of checkpoint ``path`` whose name and shape match ``model``'s (e.g. all but the
    class-dependent ``conf_layer`` / ``semantic_seg_conv`` / ``maskiou_net`` output of a model with other
    classes). Returns (number of tensors loaded, names of the model's tensors left as they were)."""
    source = load_state_dict_file(path)
    own = model.state_dict()
    matching = {k: v for k, v in source.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    model.load_state_dict(matching, strict=False)
    return len(matching), [k for k in own if k not in matching]


def proto_size(model: Yolact, device: torch.device) -> int:
    """Side of the model's (square) prototype maps for its input size, from one no-grad forward."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        size = model.cfg.max_size
        out = model(torch.zeros((1, 3, size, size), device=device))
    model.train(was_training)
    return int(out.proto.shape[1])


def sidecar_paths(checkpoint: str | Path) -> tuple[Path, Path]:
    """(``<stem>.json``, ``<stem>.optim.pt``) next to a checkpoint ``<stem>.pth``."""
    path = Path(checkpoint)
    return path.with_suffix('.json'), path.with_suffix('.optim.pt')


def checkpoint_path(out: str | Path, preset: str, epoch: int, iteration: int) -> Path:
    """``<out>/<preset>_<epoch>_<iteration>.pth`` (the official naming, parsed by load_model)."""
    return Path(out) / f'{preset}_{epoch}_{iteration}.pth'


def save_training_state(model: Yolact, optimizer: torch.optim.Optimizer, path: Path, meta: dict) -> Path:
    """Write the weights (official flat layout), the side-car JSON ``meta`` and the optimizer state."""
    save_checkpoint(model, path)
    json_path, optim_path = sidecar_paths(path)
    json_path.write_text(json.dumps(meta, indent=2, default=str))
    tmp = optim_path.with_name(optim_path.name + '.tmp')
    torch.save({'optimizer': optimizer.state_dict(), 'iteration': int(meta['iteration'])}, tmp)
    tmp.replace(optim_path)
    return path


def load_resume_state(path: str | Path, model: Yolact, optimizer: torch.optim.Optimizer,
                      class_names: Sequence[str]) -> int:
    """Load weights (strict) and, if present, optimizer state from a checkpoint of this run; returns the
    iteration to continue from. Raises ValueError if the checkpoint was trained on other classes."""
    json_path, optim_path = sidecar_paths(path)
    meta = json.loads(json_path.read_text()) if json_path.is_file() else {}
    if meta.get('class_names') is not None and list(meta['class_names']) != list(class_names):
        raise ValueError(f'{path}: trained on classes {meta["class_names"]}, dataset has {list(class_names)}')
    model.load_state_dict(load_state_dict_file(path), strict=True)
    iteration = int(meta.get('iteration', 0))
    if optim_path.is_file():
        state = torch.load(optim_path, map_location='cpu', weights_only=True)
        optimizer.load_state_dict(state['optimizer'])
        iteration = int(state.get('iteration', iteration))
    return iteration


class LossMeter:
    """Running means of the named losses since the last :meth:`reset`, plus the step timer."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.count = 0
        self.start = time.perf_counter()

    def update(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.sums[k] = self.sums.get(k, 0.0) + v
        self.count += 1

    def means(self) -> dict[str, float]:
        return {k: v / max(self.count, 1) for k, v in self.sums.items()}

    def seconds_per_iteration(self) -> float:
        return (time.perf_counter() - self.start) / max(self.count, 1)


def progress_line(iteration: int, total: int, lr: float, means: dict[str, float], sec_per_it: float) -> str:
    """One log line: ``[ 120/1000]  12% lr 1.00e-03 | box 1.234 conf ... | total 9.876 | 2.41 s/it eta 0:35:20``."""
    width = len(str(total))
    parts = ' '.join(f'{k} {v:.3f}' for k, v in means.items() if k != 'total')
    eta = int(sec_per_it * (total - iteration))
    return (f'[{iteration:>{width}}/{total}] {100 * iteration // max(total, 1):3d}% lr {lr:.2e} | {parts} | '
            f'total {means.get("total", float("nan")):.3f} | {sec_per_it:.2f} s/it '
            f'({1 / max(sec_per_it, 1e-9):.2f} it/s) eta {eta // 3600}:{eta // 60 % 60:02d}:{eta % 60:02d}')


def train_step(model: Yolact, optimizer: torch.optim.Optimizer, batch, cfg: TrainConfig,
               generator: torch.Generator) -> dict[str, float] | None:
    """Forward, losses, backward and SGD step on one batch; returns the float losses (with ``total``),
    or None if the loss was not finite (the step is skipped)."""
    output = model(batch.images)
    rescore = model.rescore if model.cfg.use_maskiou else None
    losses = compute_losses(output, batch, cfg.loss, rescore=rescore, generator=generator)
    total = sum(losses.values())
    if not bool(torch.isfinite(total)):
        return None
    optimizer.zero_grad(set_to_none=True)
    total.backward()
    if cfg.grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    optimizer.step()
    values = {k: float(v.detach()) for k, v in losses.items()}
    values['total'] = float(total.detach())
    return values


@dataclass
class _Run:
    """State of a training run assembled by :func:`_setup`."""

    model: Yolact
    optimizer: torch.optim.Optimizer
    dataset: CocoInstanceDataset
    start: int
    device: torch.device


def _setup(cfg: TrainConfig, log: Callable[[str], None]) -> _Run:
    """Build the dataset, the seeded model and the optimizer; load ``cfg.resume`` / ``cfg.init`` if given."""
    device = torch.device(cfg.device)
    dataset = CocoInstanceDataset(cfg.data, image_dir=cfg.image_dir, augment=AugmentConfig() if cfg.augment
                                  else None, seed=cfg.seed)
    model_cfg = model_config(cfg, num_classes=len(dataset.class_names) + 1)
    model = Yolact(model_cfg)
    init_for_training(model, cfg.seed).to(device).train()
    dataset.input_size, dataset.normalization = model_cfg.max_size, model_cfg.normalization
    dataset.mask_size = proto_size(model, device)  # gt masks at prototype resolution
    optimizer = torch.optim.SGD(model.parameters(), lr=lr_at(0, cfg), momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    start = 0
    if cfg.resume:
        start = load_resume_state(cfg.resume, model, optimizer, dataset.class_names)
    elif cfg.init:
        loaded, kept = load_matching_weights(model, cfg.init)
        log(f'[instseg-train] initialised {loaded} tensors from {cfg.init}; {len(kept)} keep the random init'
            + (f' (e.g. {kept[:3]})' if kept else ''))
    return _Run(model, optimizer, dataset, start, device)


def _metadata(cfg: TrainConfig, run: _Run, iteration: int, losses: dict[str, float]) -> dict:
    """Side-car JSON content of a checkpoint saved after ``iteration`` steps."""
    model_cfg = run.model.cfg
    return {'preset': model_cfg.name, 'num_classes': model_cfg.num_classes,
            'class_names': list(run.dataset.class_names), 'category_ids': list(run.dataset.category_ids),
            'input_size': model_cfg.max_size, 'iteration': iteration,
            'epoch': iteration * cfg.batch_size // len(run.dataset), 'dataset': str(run.dataset.ann_file),
            'losses': losses, 'train_config': asdict(cfg)}


def _save(cfg: TrainConfig, run: _Run, iteration: int, losses: dict[str, float]) -> Path:
    meta = _metadata(cfg, run, iteration, losses)
    path = checkpoint_path(cfg.out, run.model.cfg.name, meta['epoch'], iteration)
    return save_training_state(run.model, run.optimizer, path, meta)


def _csv_writer(out: Path, resumed: bool):
    """Open ``<out>/train_log.csv`` (append when resuming) -> (file, csv.writer)."""
    path = out / 'train_log.csv'
    new = not (resumed and path.is_file())
    handle = open(path, 'w' if new else 'a', newline='', encoding='utf-8')
    writer = csv.writer(handle)
    if new:
        writer.writerow(['iteration', 'lr', *LOSS_NAMES, 'total', 'seconds'])
    return handle, writer


class TrainResult(NamedTuple):
    """Outcome of :func:`fit`: the trained model (train mode, on the training device) and the path of
    the final checkpoint."""

    model: Yolact
    checkpoint: Path


def train(cfg: TrainConfig, callback: Callable[[int, dict[str, float]], None] | None = None,
          log: Callable[[str], None] = print) -> Path:
    """Run the training described by ``cfg``; returns the path of the final checkpoint (see :func:`fit`)."""
    return fit(cfg, callback, log).checkpoint


def fit(cfg: TrainConfig, callback: Callable[[int, dict[str, float]], None] | None = None,
        log: Callable[[str], None] = print) -> TrainResult:
    """Run the training described by ``cfg``.

    ``callback(iteration, losses)`` is called after every step (1-based iteration, float losses incl.
    ``total``); ``log`` receives the progress lines.
    """
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    run = _setup(cfg, log)
    loader = make_loader(run.dataset, cfg.batch_size, cfg.seed, start_batch=run.start,
                         num_workers=cfg.num_workers)
    log(f'[instseg-train] {run.model.cfg.name} ({run.model.cfg.num_classes} classes incl. background, '
        f'{run.model.cfg.max_size}px) on {len(run.dataset)} images, iterations {run.start}..{cfg.iterations}, '
        f'batch {cfg.batch_size}, device {run.device}, threads {torch.get_num_threads()}')
    meter, last, path = LossMeter(), {}, None
    handle, writer = _csv_writer(out, resumed=run.start > 0)
    try:
        batches = iter(loader)
        for iteration in range(run.start, cfg.iterations):
            lr = lr_at(iteration, cfg)
            for group in run.optimizer.param_groups:
                group['lr'] = lr
            tic = time.perf_counter()
            generator = torch.Generator().manual_seed(cfg.seed * 1_000_003 + iteration)
            values = train_step(run.model, run.optimizer, next(batches).to(run.device), cfg, generator)
            if values is None:
                log(f'[instseg-train] iteration {iteration + 1}: non-finite loss, step skipped')
                continue
            meter.update(values)
            writer.writerow([iteration + 1, f'{lr:.6g}', *(f'{values[k]:.6g}' if k in values else ''
                                                           for k in LOSS_NAMES),
                             f'{values["total"]:.6g}', f'{time.perf_counter() - tic:.3f}'])
            if callback is not None:
                callback(iteration + 1, values)
            done = iteration + 1
            if done % max(cfg.log_every, 1) == 0 or done == cfg.iterations:
                last = meter.means()
                log(progress_line(done, cfg.iterations, lr, last, meter.seconds_per_iteration()))
                handle.flush()
                meter.reset()
            if cfg.save_every and done % cfg.save_every == 0 and done != cfg.iterations:
                _save(cfg, run, done, last)
        path = _save(cfg, run, max(cfg.iterations, run.start), last or meter.means())
    finally:
        handle.close()
    log(f'[instseg-train] saved {path}')
    return TrainResult(run.model, path)


def parse_args(argv: Sequence[str] | None = None) -> tuple[TrainConfig, bool]:
    """Command-line flags -> (TrainConfig, whether --deterministic was given)."""
    d = TrainConfig(data='')
    p = argparse.ArgumentParser(
        formatter_class=DefaultsHelpFormatter, prog='instseg-train', description='Train YOLACT on a COCO-format dataset.')
    p.add_argument('--data', required=True, help='dataset folder with instances.json (or the json file)')
    p.add_argument('--image-dir', default=None, help='image folder if not next to the json')
    p.add_argument('--out', default=d.out, help='output folder for checkpoints and train_log.csv')
    p.add_argument('--preset', default=d.preset, help='model preset (num_classes comes from the data)')
    p.add_argument('--iterations', type=int, default=d.iterations)
    p.add_argument('--batch-size', type=int, default=d.batch_size)
    p.add_argument('--lr', type=float, default=d.lr, help='base learning rate (SGD, momentum 0.9)')
    p.add_argument('--weight-decay', type=float, default=d.weight_decay)
    p.add_argument('--warmup-iters', type=int, default=d.warmup_iters)
    p.add_argument('--lr-steps', type=float, nargs='*', default=list(d.lr_steps),
                   help='fractions of --iterations at which the lr is multiplied by --gamma')
    p.add_argument('--gamma', type=float, default=d.gamma)
    p.add_argument('--seed', type=int, default=d.seed)
    p.add_argument('--device', default=d.device, help="'cpu' or 'cuda[:N]'")
    p.add_argument('--resume', default=None, help='checkpoint .pth to continue from')
    p.add_argument('--init', default=None,
                   help='start from these weights (e.g. official COCO ones; mismatching class layers stay random)')
    p.add_argument('--save-every', type=int, default=d.save_every, help='0: save only at the end')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    p.add_argument('--workers', type=int, default=d.num_workers, help='data-loader worker processes')
    p.add_argument('--no-augment', action='store_true', help='disable flip / jitter / crop')
    p.add_argument('--log-every', type=int, default=d.log_every)
    p.add_argument('--grad-clip', type=float, default=d.grad_clip, help='max gradient norm; <= 0 disables')
    p.add_argument('--input-size', type=int, default=None,
                   help="experiments only: train at this input side instead of the preset's")
    p.add_argument('--deterministic', action='store_true', help='torch.use_deterministic_algorithms(True)')
    a = p.parse_args(argv)
    cfg = TrainConfig(data=a.data, out=a.out, preset=a.preset, iterations=a.iterations, batch_size=a.batch_size,
                      lr=a.lr, weight_decay=a.weight_decay, warmup_iters=a.warmup_iters,
                      lr_steps=tuple(a.lr_steps), gamma=a.gamma, seed=a.seed, device=a.device,
                      resume=a.resume, init=a.init, save_every=a.save_every, threads=a.threads,
                      num_workers=a.workers, augment=not a.no_augment, log_every=a.log_every,
                      grad_clip=a.grad_clip if a.grad_clip and a.grad_clip > 0 else None,
                      input_size=a.input_size, image_dir=a.image_dir)
    return cfg, a.deterministic


def main(argv: Sequence[str] | None = None) -> int:
    """``instseg-train`` entry point; returns the process exit code."""
    cfg, deterministic = parse_args(argv)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        train(cfg, log=lambda line: print(line, flush=True))
    except (FileNotFoundError, ValueError) as exc:
        print(f'instseg-train: error: {exc}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print('instseg-train: interrupted', file=sys.stderr)
        return 130
    return 0


if __name__ == '__main__':
    raise SystemExit(main())

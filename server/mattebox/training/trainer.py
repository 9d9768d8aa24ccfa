"""The training loop behind `mattebox train CONFIG`.

A JSON config (``configs/*.json``, keys = :class:`TrainConfig` fields, ``"data"`` = :class:`DataConfig` fields)
names a model from the model registry, an objective and a budget. The loop draws samples ``i = 0, 1, 2 …`` of the
synthetic set in order (sample ``i`` is a pure function of its seed), so a resumed run sees exactly the batches an
uninterrupted one would. Features: AdamW with warm-up and cosine decay, gradient accumulation, mixed precision on
CUDA (bf16 where supported, else fp16 with a grad scaler), gradient clipping, JSON-lines loss log, periodic
evaluation on the held-out synthetic set and alphamatting-dev, checkpoints (weights as safetensors through
:mod:`mattebox.models.weights`, optimiser state beside them) and resume, a progress line with ETA.

Objectives (how model outputs are supervised; heads a model does not have add nothing):

* ``supervised`` — Parallax L_sep + L_laplacian + L_grad, + L_composition when the model predicts a premultiplied
  foreground, + PP-Matting's semantic cross-entropy and detail loss when it has those heads, + Mask2Alpha's
  confidence loss when it predicts a confidence map.
* ``alpha-free`` — no alpha labels at all: known-region L1 against the trimap + 10 × DDC (Liu et al.).
* ``known-only`` — the alpha-free paper's first ablation (Table 4, row 1): the known-region L1 alone, to show
  what DDC adds.

Model convention: ``model.inputs`` (default ``("image", "trimap")``) names the batch tensors passed as keyword
arguments; the model returns a tensor (alpha) or a dict with ``alpha`` B×1×H×W in [0, 1] and optionally
``foreground_premultiplied`` (B×3×H×W linear light), ``semantic`` (B×3×H×W logits: bg/transition/fg),
``detail`` (B×1×H×W) and ``confidence`` (B×1×H×W).
"""
from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch

from ..models.inputs import module_inputs, normalisation, normalise_outputs
from . import losses
from .checkpoint import load_model, save_model
from .data import DataConfig, SynthMattingDataset, single_threaded_worker
from .evaluate import alphamatting_names, evaluate_alphamatting, evaluate_heldout, model_predictor

OBJECTIVES = ("supervised", "alpha-free", "known-only")


@dataclass
class TrainConfig:
    name: str
    model: str  #: registry name, or "package.module:factory" for a model defined outside the registry
    steps: int
    output: str  #: run folder (relative paths are relative to the current directory)
    model_options: Dict[str, Any] = field(default_factory=dict)
    objective: str = "supervised"
    data: DataConfig = field(default_factory=DataConfig)
    seed: int = 0  #: model initialisation seed and the first training sample's seed
    batch_size: int = 4
    accumulate: int = 1  #: micro-batches per optimiser step
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_steps: int = 0
    clip_grad: float = 1.0
    loss_weights: Dict[str, float] = field(default_factory=dict)  #: per-term multipliers (default 1)
    device: str = "auto"  #: auto | cpu | cuda | cuda:N
    amp: bool = True  #: mixed precision (CUDA only)
    workers: int = 0  #: DataLoader worker processes
    threads: Optional[int] = None  #: CPU intra-op threads (None = torch's default; 1 is fastest on a busy machine)
    log_every: int = 10
    checkpoint_every: int = 500
    eval_every: int = 500
    eval_heldout: int = 16  #: held-out synthetic samples per evaluation (0 = none)
    eval_alphamatting: bool = True
    eval_max_side: Optional[int] = 512  #: alphamatting-dev images are run at most this size (None = full)

    @classmethod
    def from_dict(cls, values: Dict[str, Any]) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"config: unknown keys {sorted(unknown)} (expected some of {sorted(names)})")
        missing = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING and
                   f.default_factory is dataclasses.MISSING and f.name not in values]
        if missing:
            raise ValueError(f"config: missing required keys {missing}")
        values = dict(values)
        values["data"] = DataConfig.from_dict(values.get("data", {}))
        config = cls(**values)
        if config.objective not in OBJECTIVES:
            raise ValueError(f"config.objective must be one of {OBJECTIVES}, got {config.objective!r}")
        for key in ("steps", "batch_size", "accumulate", "log_every", "checkpoint_every", "eval_every"):
            if int(getattr(config, key)) < 1:
                raise ValueError(f"config.{key} must be a positive integer, got {getattr(config, key)!r}")
        return config

    @classmethod
    def load(cls, path: str) -> "TrainConfig":
        try:
            values = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ValueError(f"config: no such file {path}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"config: {path} is not valid JSON ({exc})") from None
        return cls.from_dict(values)

    def to_dict(self) -> Dict[str, Any]:
        out = dataclasses.asdict(self)
        out["data"] = {k: list(v) if isinstance(v, tuple) else v for k, v in out["data"].items()}
        return out


# ------------------------------------------------------------------------------------------------- models
def build_model(name: str, options: Dict[str, Any]) -> torch.nn.Module:
    """A model by registry name (``mattebox.models.registry.build``; ``{"tiny": true}`` selects the test config)
    or by ``module:factory``. Registry models get ``inputs`` and input ``mean``/``std`` from their spec."""
    if ":" in name:
        import importlib

        module_name, factory = name.split(":", 1)
        return getattr(importlib.import_module(module_name), factory)(**options)
    from ..models import registry

    spec = registry.get_spec(name)
    model = registry.build(name, **options)
    model.inputs = tuple(spec.inputs)
    model.input_mean, model.input_std = normalisation(spec)
    return model



# ------------------------------------------------------------------------------------------------- objectives
def objective_terms(objective: str, outputs: Dict[str, torch.Tensor], batch: Dict[str, torch.Tensor]
                    ) -> Dict[str, torch.Tensor]:
    """Loss terms (unweighted) of an objective for one batch.

    Premultiplied foregrounds are sRGB-encoded α·F (the engines' convention), so the composition target is the
    exact layer composite ``α_gt·F + (1 − α_gt)·B`` of the sRGB-encoded layers. A Mask2Alpha confidence map is
    high where the model is sure (its detail stage refines 1 − confidence), so it is trained towards
    1 − |α_low − α_gt| at its own (quarter) resolution.
    """
    alpha = outputs["alpha"].float()
    if objective == "alpha-free":
        return losses.alpha_free_loss(alpha, batch["image"], batch["trimap"])
    if objective == "known-only":
        return {"known": losses.known_loss(alpha, batch["trimap"])}
    gt = batch["alpha"]
    fg_premultiplied = outputs.get("foreground_premultiplied")
    layered = gt * batch["foreground"] + (1 - gt) * batch["background"]
    terms = losses.parallax_loss(alpha, gt, None if fg_premultiplied is None else fg_premultiplied.float(),
                                 layered, batch["background"])
    if "semantic" in outputs:
        terms["semantic"] = losses.semantic_cross_entropy(outputs["semantic"].float(), batch["trimap"])
    if "detail" in outputs:
        terms["detail"] = losses.detail_loss(outputs["detail"].float(), gt, batch["trimap"])
    if "confidence" in outputs:
        low = outputs.get("alpha_low", outputs["alpha"]).float()
        gt_low = torch.nn.functional.adaptive_avg_pool2d(gt, low.shape[-2:])
        terms["confidence"] = losses.confidence_loss(1 - outputs["confidence"].float(), low, gt_low)
        if "alpha_low" in outputs:
            terms["alpha_low"] = losses.separation_l1(low, gt_low)
    return terms


# ------------------------------------------------------------------------------------------------- helpers
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"config.device is {name!r} but CUDA is not available here")
    return device


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up then cosine decay to 5 % of ``lr`` at the last step."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def format_duration(seconds: float) -> str:
    seconds = int(max(0, seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


class ProgressLine:
    """``step 120/1000 [#####.....] loss 0.1234 3.1 step/s ETA 4m43s`` on stderr (rewritten in place on a tty)."""

    def __init__(self, total: int, start: int, stream=None):
        self.total, self.start, self.stream = total, start, stream or sys.stderr
        self.started = time.perf_counter()

    def update(self, step: int, message: str) -> str:
        elapsed = time.perf_counter() - self.started
        rate = (step - self.start) / elapsed if elapsed > 0 else 0.0
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        filled = int(20 * step / self.total)
        line = (f"step {step}/{self.total} [{'#' * filled}{'.' * (20 - filled)}] {message} {rate:.2f} step/s "
                f"ETA {format_duration(eta) if math.isfinite(eta) else '?'}")
        tty = getattr(self.stream, "isatty", lambda: False)()
        self.stream.write(("\r" + line) if tty else line + "\n")
        self.stream.flush()
        return line


# ------------------------------------------------------------------------------------------------- trainer
class Trainer:
    def __init__(self, config: TrainConfig, log=print):
        self.config, self.log = config, log
        self.output = Path(config.output)
        self.device = resolve_device(config.device)
        if config.threads:
            torch.set_num_threads(int(config.threads))
        torch.manual_seed(config.seed)
        self.model = build_model(config.model, config.model_options).to(self.device)
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.amp_dtype = None
        if config.amp and self.device.type == "cuda":
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step = 0

    # ---------------------------------------------------------------- checkpoints
    def checkpoint_paths(self, tag: str = "last"):
        return (self.output / f"{tag}.safetensors", self.output / f"{tag}.optim.pt", self.output / f"{tag}.json")

    def save_checkpoint(self, tag: str = "last", metrics: Optional[Dict] = None) -> Path:
        self.output.mkdir(parents=True, exist_ok=True)
        weights, optim, meta = self.checkpoint_paths(tag)
        info = {"step": self.step, "config": self.config.to_dict(), "metrics": metrics or {},
                "torch": torch.__version__}
        save_model(self.model, weights, metadata={"mattebox.model": self.config.model,
                                                    "mattebox.step": str(self.step),
                                                    "mattebox.objective": self.config.objective})
        torch.save({"optimizer": self.optimizer.state_dict(), "scaler": self.scaler.state_dict(),
                    "step": self.step}, optim)
        meta.write_text(json.dumps(info, indent=2))
        return weights

    def install(self) -> Path:
        """Export the model's current weights as its registry entry's installed file (with the sha256 sidecar the
        learned engines verify); returns the path. Only for registry models."""
        from ..models import registry
        from ..models.weights import export_weights, weights_path

        if ":" in self.config.model:
            raise ValueError(f"config.model {self.config.model!r} is not a registry model: nothing to install")
        path = weights_path(registry.get_spec(self.config.model))
        if path is None:
            raise ValueError(f"registry model {self.config.model!r} has no weights entry")
        export_weights(self.model, path, metadata={"mattebox.model": self.config.model,
                                                   "mattebox.step": str(self.step),
                                                   "mattebox.objective": self.config.objective})
        return path

    def resume(self) -> bool:
        """Load ``last`` from the run folder if present; returns whether a checkpoint was loaded."""
        weights, optim, meta = self.checkpoint_paths("last")
        if not weights.is_file():
            return False
        load_model(self.model, weights)
        state = torch.load(optim, map_location=self.device, weights_only=True)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        return True

    # ---------------------------------------------------------------- evaluation
    def predict(self, image: np.ndarray, trimap: np.ndarray, sample: Dict[str, np.ndarray]) -> np.ndarray:
        """Alpha for one image with the model being trained (see :func:`evaluate.model_predictor`)."""
        alpha = model_predictor(self.model, self.device, self.amp_dtype)(image, trimap, sample)
        self.model.train()
        return alpha

    def evaluate(self) -> Dict[str, Any]:
        config = self.config
        results: Dict[str, Any] = {}
        if config.eval_heldout > 0:
            results["heldout"] = evaluate_heldout(self.predict, config.eval_heldout, config.data)["mean"]
        if config.eval_alphamatting:
            names = alphamatting_names(exclude=config.data.alphamatting_foregrounds)
            if names:
                results["alphamatting"] = evaluate_alphamatting(self.predict, names,
                                                                max_side=config.eval_max_side)["mean"]
            else:
                results["alphamatting"] = "skipped: alphamatting-dev not found (set MATTEBOX_ALPHAMATTING)"
        return results

    # ---------------------------------------------------------------- loop
    def train(self, resume: bool = True, progress_stream=None, stop_at: Optional[int] = None,
              time_limit: Optional[float] = None) -> Dict[str, Any]:
        """Train to ``config.steps``; pause early (saving ``last``, to be resumed) after step ``stop_at``, after
        ``time_limit`` seconds, or on SIGTERM/SIGINT (e.g. ``timeout``). Returns the step reached, the weights
        path and the last evaluation."""
        import signal

        started = time.perf_counter()
        stop_requested = []
        previous_handlers = {}

        def request_stop(signum, frame):
            stop_requested.append(signum)

        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                previous_handlers[signum] = signal.signal(signum, request_stop)
            except ValueError:  # not the main thread: signals stay with the caller
                pass
        try:
            return self._train(resume, progress_stream, stop_at, time_limit, started, stop_requested)
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)

    def _train(self, resume, progress_stream, stop_at, time_limit, started, stop_requested) -> Dict[str, Any]:
        config = self.config
        self.output.mkdir(parents=True, exist_ok=True)
        if resume and self.resume():
            self.log(f"resumed {self.output} at step {self.step}")
        else:  # a fresh run starts fresh logs
            for name in ("log.jsonl", "eval.jsonl"):
                (self.output / name).unlink(missing_ok=True)
        (self.output / "config.json").write_text(json.dumps(config.to_dict(), indent=2))
        per_step = config.batch_size * config.accumulate
        dataset = SynthMattingDataset(config.data, config.steps * per_step, base_seed=config.seed)
        loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size,
                                             sampler=range(self.step * per_step, len(dataset)),
                                             num_workers=config.workers, pin_memory=self.device.type == "cuda",
                                             persistent_workers=False,
                                             worker_init_fn=single_threaded_worker if config.workers else None)
        batches = iter(loader)
        progress = ProgressLine(config.steps, self.step, progress_stream)
        log_path = self.output / "log.jsonl"
        self.model.train()
        last_eval: Dict[str, Any] = {}
        window: List[Dict[str, float]] = []
        end = config.steps if stop_at is None else min(stop_at, config.steps)
        while self.step < end:
            if stop_requested or (time_limit is not None and time.perf_counter() - started > time_limit):
                self.log(f"\nstopping at step {self.step} ({'signal' if stop_requested else 'time limit'}); "
                         "run the same command again to resume")
                break
            for group in self.optimizer.param_groups:
                group["lr"] = learning_rate(config, self.step)
            self.optimizer.zero_grad(set_to_none=True)
            step_terms: Dict[str, float] = {}
            for _ in range(config.accumulate):
                batch = {k: v.to(self.device, non_blocking=True) for k, v in next(batches).items()}
                with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                    outputs = normalise_outputs(self.model(**module_inputs(self.model, batch, training=True)))
                terms = objective_terms(config.objective, outputs, batch)
                loss = sum(config.loss_weights.get(k, 1.0) * v for k, v in terms.items())
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"non-finite loss at step {self.step}: "
                                             f"{ {k: float(v) for k, v in terms.items()} }")
                self.scaler.scale(loss / config.accumulate).backward()
                for k, v in terms.items():
                    step_terms[k] = step_terms.get(k, 0.0) + float(v.detach()) / config.accumulate
                step_terms["total"] = step_terms.get("total", 0.0) + float(loss.detach()) / config.accumulate
            self.scaler.unscale_(self.optimizer)
            if config.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            window.append(step_terms)
            if self.step % config.log_every == 0 or self.step == config.steps:
                mean = {k: float(np.mean([w[k] for w in window])) for k in window[0]}
                window = []
                record = {"step": self.step, "lr": learning_rate(config, self.step - 1), "time": time.time(), **mean}
                with log_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                progress.update(self.step, f"loss {mean['total']:.4f}")
            evaluate_now = self.step % config.eval_every == 0 or self.step == config.steps
            if evaluate_now and (config.eval_heldout > 0 or config.eval_alphamatting):
                last_eval = self.evaluate()
                with (self.output / "eval.jsonl").open("a") as f:
                    f.write(json.dumps({"step": self.step, **last_eval}) + "\n")
                self.log(f"\nevaluation at step {self.step}: {json.dumps(last_eval)}")
            if self.step % config.checkpoint_every == 0 or self.step == config.steps:
                self.save_checkpoint("last", last_eval)
        if self.step < config.steps:  # paused: the state to resume from
            if self.step > 0:
                self.save_checkpoint("last", last_eval)
            return {"step": self.step, "weights": str(self.checkpoint_paths("last")[0]), "evaluation": last_eval}
        if progress_stream is None and getattr(sys.stderr, "isatty", lambda: False)():
            sys.stderr.write("\n")
        final = self.save_checkpoint("final", last_eval)
        return {"step": self.step, "weights": str(final), "evaluation": last_eval}

"""Success detectors: a task's frames (and proprio) -> the probability that the task has succeeded.

Every caller that judges success (the world model's per-step verdict, the simulated operator's
failure trigger, world-model evaluation) goes through :class:`SuccessDetector`, so it does not
care which implementation it holds:

- :class:`LearnedDetector`: a small CNN over a downscaled frame, plus an optional proprio MLP,
  trained on real episodes' ``next.success`` frames (optionally with a second head regressing the
  task's success metric on every frame, e.g. the arm's lift: denser supervision than one success
  frame per episode) and calibrated on held-out real episodes' outcomes (Platt scaling of the
  episode's highest logit, then the verdict's threshold);
- :class:`ProbeDetector`: the state probe, whose "probability" is the task's success metric of the
  state it reads off a frame (:meth:`~hiwm.tasks.world.TaskWorld.metric_from_state`) and whose
  threshold is the one :mod:`hiwm.world_model.verdict` fits, so its verdicts stay exactly what the
  probe gave.

An episode succeeds when some frame's probability is above the detector's threshold (the real env
ends an episode at its first successful frame). A detector is saved as ``detector.json`` (kind,
config, calibration, the digests of its tensor files; written last) beside its safetensors file;
loading checks the digest. A world-model checkpoint holding a ``detector/`` folder uses that
detector instead of its probe (:func:`for_checkpoint`).

Operator labels of a branch (``success``/``failure`` from the playground) override the detector's
verdict, which the sessions record as ``detector:success``/``detector:failure``
(:func:`hiwm.branch_cache.store.branch_verdict`).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hiwm import checkpoints
from hiwm.checkpoints import CheckpointError, load_weights, save_tensors, state_tensors
from hiwm.files import atomic_write_json
from hiwm.stats import majority_rate
from hiwm.training import Budget, Ranks, train_loop
from hiwm.world_model.config import ProbeConfig, from_dict, to_dict

FORMAT = "hiwm.detector/2"  # /2: the optional metric head (metric_weight)
READABLE = (FORMAT, "hiwm.detector/1")  # /1 files are /2 ones without the metric head
CONFIG = "detector.json"
WEIGHTS = "detector.safetensors"
PROBE_WEIGHTS = "probe.safetensors"
FOLDER = "detector"  # a world-model checkpoint's detector, when it has one
ECE_BINS = 10
SCORES = ("success", "metric")  # DetectorConfig.score: which output the verdict calibrates


class SuccessDetector(ABC):
    """Frames -> per-frame probability of success; an episode's verdict; save and load."""

    kind: str
    threshold: float

    @abstractmethod
    def probability(self, frames: np.ndarray, proprio: np.ndarray | None = None) -> np.ndarray:
        """(T, H, W, 3) uint8 frames (one camera) and optional (T, P) proprio -> (T,) probabilities."""

    @abstractmethod
    def save(self, path: str | Path) -> None:
        """Write the detector to folder ``path`` (created)."""

    def success(self, probability: float) -> bool:
        """The verdict on one frame's probability: above the detector's threshold."""
        return probability > self.threshold

    def verdict(self, frames: np.ndarray, proprio: np.ndarray | None = None) -> bool:
        """An episode's verdict: some frame succeeded."""
        return self.success(float(np.max(self.probability(frames, proprio))))


# -- the state probe as a detector -------------------------------------------------------------
class ProbeDetector(SuccessDetector):
    """The task's metric of the state the probe reads is the probability; its fitted threshold the verdict's."""

    kind = "probe"

    def __init__(self, probe: Any) -> None:
        self.probe = probe

    @property
    def threshold(self) -> float:  # type: ignore[override]
        return float(self.probe.cfg.success_threshold)

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.probe.cfg.success_threshold = float(value)

    def states(self, frames: np.ndarray) -> np.ndarray:
        """The probe's (T, S) task states."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        return np.concatenate([self.probe.predict(frames[i : i + 256]) for i in range(0, len(frames), 256)])

    def metric(self, state: np.ndarray) -> float:
        """The probability of one state the probe read: the task's metric of it."""
        return self.probe.metric(state)

    def probability(self, frames: np.ndarray, proprio: np.ndarray | None = None) -> np.ndarray:
        return np.array([self.metric(s) for s in self.states(frames)])

    def save(self, path: str | Path) -> None:
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        digest = save_tensors(out / PROBE_WEIGHTS, state_tensors(self.probe), {"format": FORMAT})
        doc = {
            "format": FORMAT,
            "kind": self.kind,
            "probe": to_dict(self.probe.cfg),
            "digests": {PROBE_WEIGHTS: digest},
        }
        atomic_write_json(out / CONFIG, doc)


# -- the learned detector -----------------------------------------------------------------------
@dataclass
class DetectorConfig:
    image_size: int = 64  # frames are resized to this square before the CNN
    camera: str = ""  # the dataset camera it reads ("": the first one)
    proprio_dim: int = 0  # 0: frames only
    channels: tuple[int, ...] = (16, 32, 64, 64)  # each a stride-2 conv
    hidden: int = 64
    # > 0: a second output regresses the task's success metric / metric_scale on every frame (the
    # threshold as scale puts success at 1), weighted so in the training loss beside the success one
    metric_weight: float = 0.0
    metric_scale: float = 1.0
    score: str = "success"  # the output calibrated into the probability: "success" or "metric" (its head's)
    proprio_layers: int = 1  # hidden layers of the proprio MLP (a joint pose -> a gripper height needs two)
    frames: bool = True  # False: proprio only (the frames are not read)
    # proprio normalisation (training data statistics)
    proprio_mean: list[float] = field(default_factory=list)
    proprio_std: list[float] = field(default_factory=list)
    # calibration on held-out episodes: p = sigmoid(scale * logit + bias); success above threshold
    scale: float = 1.0
    bias: float = 0.0
    threshold: float = 0.5

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        if self.image_size < 16 or self.image_size % (2 ** len(self.channels)):
            raise ValueError(f"image_size must be >= 16 and a multiple of {2 ** len(self.channels)}")
        if self.proprio_dim < 0 or len(self.proprio_mean) not in (0, self.proprio_dim):
            raise ValueError(f"proprio statistics must have {self.proprio_dim} values")
        if self.metric_weight < 0 or not self.metric_scale > 0:
            raise ValueError("metric_weight must be >= 0 and metric_scale > 0")
        if self.score not in SCORES or (self.score == "metric" and not self.metric_weight > 0):
            raise ValueError(f"score must be one of {SCORES} ('metric' needs metric_weight > 0), got {self.score!r}")
        if self.proprio_layers < 1:
            raise ValueError(f"proprio_layers must be >= 1, got {self.proprio_layers}")


class DetectorNet(nn.Module):
    """(B, 3, S, S) frames in [0, 1] and (B, P) normalised proprio -> (B,) success logits.

    Stride-2 convs down to a small grid, flattened (not pooled: where things are is what success
    is about, e.g. a block on its goal), an MLP on the proprio beside it, one head; with
    ``metric_weight`` its last layer has a second output, the scaled metric (:meth:`outputs`)."""

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        if not (cfg.frames or cfg.proprio_dim):
            raise ValueError("a detector reads frames, proprio or both")
        self.image: nn.Module | None = None
        if cfg.frames:
            layers: list[nn.Module] = []
            c_in = 3
            for c in cfg.channels:
                layers += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.GroupNorm(min(4, c), c), nn.GELU()]
                c_in = c
            self.features = nn.Sequential(*layers)
            side = cfg.image_size // 2 ** len(cfg.channels)
            self.image = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, cfg.hidden), nn.GELU())
        self.proprio: nn.Module | None = None
        if cfg.proprio_dim:
            mlp: list[nn.Module] = []
            for i in range(cfg.proprio_layers):
                mlp += [nn.Linear(cfg.proprio_dim if i == 0 else cfg.hidden, cfg.hidden), nn.GELU()]
            self.proprio = nn.Sequential(*mlp)
        width = cfg.hidden * (int(cfg.frames) + int(cfg.proprio_dim > 0))
        outputs = 2 if cfg.metric_weight > 0 else 1
        self.head = nn.Sequential(nn.Linear(width, cfg.hidden), nn.GELU(), nn.Linear(cfg.hidden, outputs))

    def outputs(self, x: Tensor, proprio: Tensor | None = None) -> Tensor:
        """(B, 1) success logits, or (B, 2) with the scaled metric second."""
        parts = [] if self.image is None else [self.image(self.features(x))]
        if self.proprio is not None:
            if proprio is None:
                raise ValueError("this detector reads proprio: pass it")
            parts.append(self.proprio(proprio))
        return self.head(torch.cat(parts, dim=1))

    def forward(self, x: Tensor, proprio: Tensor | None = None) -> Tensor:
        return self.outputs(x, proprio)[:, 0]


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, H, W, 3) uint8 -> (T, size, size, 3) uint8 (area averaging when shrinking)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {frames.shape}")
    if frames.shape[1:3] == (size, size):
        return np.ascontiguousarray(frames, dtype=np.uint8)
    x = torch.from_numpy(np.ascontiguousarray(frames)).movedim(-1, 1).float()
    mode = "area" if frames.shape[1] >= size else "bilinear"
    y = F.interpolate(x, size=(size, size), mode=mode)
    return y.round().clamp(0, 255).to(torch.uint8).movedim(1, -1).numpy()


class LearnedDetector(SuccessDetector):
    """A trained :class:`DetectorNet` with its calibration."""

    kind = "learned"

    def __init__(self, cfg: DetectorConfig, net: DetectorNet | None = None) -> None:
        self.cfg = cfg
        self.net = (net or DetectorNet(cfg)).eval()

    @property
    def threshold(self) -> float:  # type: ignore[override]
        return self.cfg.threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        self.cfg.threshold = float(value)

    def inputs(self, frames: np.ndarray, proprio: np.ndarray | None) -> tuple[Tensor, Tensor | None]:
        """Network inputs of raw frames (any size) and raw proprio."""
        frames = np.asarray(frames)
        if frames.ndim == 3:
            frames = frames[None]
        x = torch.from_numpy(resize_frames(frames, self.cfg.image_size)).movedim(-1, 1).float() / 255.0
        return x, self.normalise(proprio, len(frames))

    def normalise(self, proprio: np.ndarray | None, n: int) -> Tensor | None:
        if not self.cfg.proprio_dim:
            return None
        if proprio is None:
            raise ValueError(f"this detector reads {self.cfg.proprio_dim} proprio values per frame")
        p = np.asarray(proprio, dtype=np.float32).reshape(n, -1)
        if p.shape[1] != self.cfg.proprio_dim:
            raise ValueError(f"proprio has {p.shape[1]} values, the detector reads {self.cfg.proprio_dim}")
        mean = np.asarray(self.cfg.proprio_mean or [0.0] * p.shape[1], dtype=np.float32)
        std = np.asarray(self.cfg.proprio_std or [1.0] * p.shape[1], dtype=np.float32)
        return torch.from_numpy((p - mean) / std)

    @torch.inference_mode()
    def logits(self, frames: np.ndarray, proprio: np.ndarray | None = None, batch: int = 256) -> np.ndarray:
        """Uncalibrated scores, (T,): the success logits, or the metric head's reading (``cfg.score``)."""
        x, p = self.inputs(frames, proprio)
        device = next(self.net.parameters()).device
        k = SCORES.index(self.cfg.score)
        out = [
            self.net.outputs(x[i : i + batch].to(device), None if p is None else p[i : i + batch].to(device))[:, k]
            .float()
            .cpu()
            for i in range(0, len(x), batch)
        ]
        return torch.cat(out).numpy().astype(np.float64)

    def probability(self, frames: np.ndarray, proprio: np.ndarray | None = None) -> np.ndarray:
        z = self.cfg.scale * self.logits(frames, proprio) + self.cfg.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -60, 60)))

    def save(self, path: str | Path) -> None:
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        digest = save_tensors(out / WEIGHTS, state_tensors(self.net), {"format": FORMAT})
        atomic_write_json(
            out / CONFIG,
            {"format": FORMAT, "kind": self.kind, "config": to_dict(self.cfg), "digests": {WEIGHTS: digest}},
        )


def load(path: str | Path, device: str | torch.device = "cpu") -> SuccessDetector:
    """A detector saved by :meth:`SuccessDetector.save`; CheckpointError if missing, foreign or damaged."""
    path = Path(path)
    source = path / CONFIG
    try:
        doc = json.loads(source.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{source}: missing") from None
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{source}: unreadable ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") not in READABLE:
        raise CheckpointError(f"{source}: not a hiwm detector (format {FORMAT!r})")
    if doc.get("kind") == LearnedDetector.kind:
        cfg = checkpoints.build_from_config(lambda: from_dict(DetectorConfig, doc["config"]), source)
        net = checkpoints.build_from_config(lambda: DetectorNet(cfg), source)
        load_weights(net, path / WEIGHTS, checkpoints.recorded_digest(doc, WEIGHTS, source))
        return LearnedDetector(cfg, net.to(device))
    if doc.get("kind") == ProbeDetector.kind:
        from hiwm.world_model.probe import StateProbe

        probe_cfg = checkpoints.build_from_config(lambda: from_dict(ProbeConfig, doc["probe"]), source)
        probe = checkpoints.build_from_config(lambda: StateProbe(probe_cfg), source)
        load_weights(probe, path / PROBE_WEIGHTS, checkpoints.recorded_digest(doc, PROBE_WEIGHTS, source))
        return ProbeDetector(probe.to(device).eval())
    raise CheckpointError(f"{source}: unknown detector kind {doc.get('kind')!r}")


def for_checkpoint(checkpoint: str | Path, probe: Any, device: str | torch.device = "cpu") -> SuccessDetector | None:
    """The detector of a world-model checkpoint: its ``detector/`` folder, else its probe, else None."""
    folder = Path(checkpoint) / FOLDER
    if (folder / CONFIG).exists():
        return load(folder, device)
    return ProbeDetector(probe) if probe is not None else None


# -- data -------------------------------------------------------------------------------------
@dataclass
class Outcome:
    """One real episode for the detector: frames, optional proprio, per-frame success labels."""

    frames: np.ndarray  # (T, H, W, 3) uint8
    labels: np.ndarray  # (T,) bool: success shows in frame t
    proprio: np.ndarray | None = None  # (T, P) float32
    source: str = ""
    metric: np.ndarray | None = None  # (T,) the task's success metric in frame t, where recorded

    @property
    def success(self) -> bool:
        return bool(self.labels.any())

    def until_success(self) -> Outcome:
        """The episode as the real world ends it, at its first successful frame: frames recorded past it
        (an expert holding the success, for more positive training frames) are for training only."""
        if not self.success:
            return self
        end = int(np.argmax(self.labels)) + 1
        if end == len(self.labels):
            return self
        proprio = None if self.proprio is None else self.proprio[:end]
        metric = None if self.metric is None else self.metric[:end]
        return Outcome(self.frames[:end], self.labels[:end], proprio, self.source, metric)


def frame_labels(next_success: np.ndarray) -> np.ndarray:
    """Per-frame labels from ``next.success``: success from its first True on (it does not undo itself)."""
    return np.maximum.accumulate(np.asarray(next_success, dtype=bool).reshape(-1))


def load_outcomes(
    roots: Sequence[str | Path], camera: str = "", proprio: bool = False, metric: str = ""
) -> list[Outcome]:
    """Every episode of LeRobot datasets with ``observation.images.*`` (or ``observation.image``),
    optional ``observation.state`` and ``next.success``; ``metric`` names the task's success metric
    to read as well (``next.<metric>``, e.g. ``lift``)."""
    from hiwm.data import LeRobotDataset
    from hiwm.world_model.data import PROPRIO_KEY, image_key

    out = []
    for root in roots:
        ds = LeRobotDataset(root)
        features = ds.features
        if "next.success" not in features:
            raise ValueError(f"{root}: no 'next.success' feature: the detector learns from episode outcomes")
        if camera:
            key = image_key(features, camera)
        else:
            keys = sorted(k for k in features if k.startswith("observation.images."))
            key = keys[0] if keys else image_key(features, "image")
        if proprio and PROPRIO_KEY not in features:
            raise ValueError(f"{root}: no {PROPRIO_KEY!r} feature for the detector's proprio")
        if metric and f"next.{metric}" not in features:
            raise ValueError(f"{root}: no 'next.{metric}' feature for the detector's metric head")
        for i in range(ds.num_episodes):
            ep = ds.episode(i)
            frames = np.ascontiguousarray(ep[key])
            state = np.asarray(ep[PROPRIO_KEY], dtype=np.float32).reshape(len(frames), -1) if proprio else None
            values = np.asarray(ep[f"next.{metric}"], dtype=np.float32).reshape(-1) if metric else None
            out.append(Outcome(frames, frame_labels(ep["next.success"]), state, f"{root}#{i}", values))
    if not out:
        raise ValueError(f"no episodes in {[str(r) for r in roots]}")
    return out


def split(episodes: Sequence[Outcome], fractions: tuple[float, float], seed: int) -> tuple[list, list, list]:
    """(train, calibration, test) by whole episodes, stratified by outcome (a seeded shuffle)."""
    rng = np.random.default_rng(seed)
    parts: tuple[list, list, list] = ([], [], [])
    for outcome in (True, False):
        group = [e for e in episodes if e.success == outcome]
        order = rng.permutation(len(group))
        n_cal, n_test = round(len(group) * fractions[0]), round(len(group) * fractions[1])
        for j, i in enumerate(order):
            parts[0 if j >= n_cal + n_test else (1 if j < n_cal else 2)].append(group[i])
    return parts


# -- training ---------------------------------------------------------------------------------
@dataclass
class DetectorTrainConfig:
    steps: int = 600
    batch: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    threads: int = 1  # torch CPU threads (0: torch's default); one is fastest for so small a net on a busy CPU
    # frames this close before an episode's first success are left out of training: they look like
    # it (a cube 1 mm short of the lift, a block 1 % short of the goal) and labelling them "no" teaches noise
    margin: int = 3
    calibration_fraction: float = 0.2  # held-out episodes for the calibration
    test_fraction: float = 0.2  # held-out episodes the reported figures come from


class Frames:
    """Every training frame at the detector's size, with labels and proprio; balanced batches."""

    def __init__(self, episodes: Sequence[Outcome], cfg: DetectorConfig, seed: int, margin: int = 0) -> None:
        self.x = np.concatenate([resize_frames(e.frames, cfg.image_size) for e in episodes])
        self.y = np.concatenate([e.labels for e in episodes]).astype(np.float32)
        self.p = np.concatenate([e.proprio for e in episodes]) if cfg.proprio_dim else None  # type: ignore[misc]
        self.m = None  # the scaled metric per frame, for the metric head
        if cfg.metric_weight > 0:
            if any(e.metric is None for e in episodes):
                raise ValueError("the detector's metric head needs every training episode's metric per frame")
            self.m = np.concatenate([e.metric for e in episodes]).astype(np.float32) / cfg.metric_scale  # type: ignore[misc]
        keep = np.concatenate([near_success(e.labels, margin) == 0 for e in episodes])
        self.pos, self.neg = np.flatnonzero(self.y > 0.5), np.flatnonzero((self.y < 0.5) & keep)
        if not len(self.pos) or not len(self.neg):
            raise ValueError("training needs successful and failed frames both (check next.success)")
        self.rng = np.random.default_rng(seed)

    def sample(self, n: int) -> np.ndarray:
        """Half successes, half not: success frames are rare (an episode ends at its first)."""
        return np.concatenate([self.rng.choice(self.pos, n // 2), self.rng.choice(self.neg, n - n // 2)])


def near_success(labels: np.ndarray, margin: int) -> np.ndarray:
    """1 on the ``margin`` frames before an episode's first success frame, else 0."""
    out = np.zeros(len(labels), dtype=np.int8)
    first = np.flatnonzero(labels)
    if margin > 0 and len(first):
        out[max(0, first[0] - margin) : first[0]] = 1
    return out


def batch_loss(detector: LearnedDetector, data: Frames, batch: int) -> Tensor:
    """Binary cross-entropy of the net's logits on one balanced batch (random flips of brightness),
    plus ``metric_weight`` times the metric head's Huber loss on the scaled metric."""
    idx = data.sample(batch)
    x = torch.from_numpy(data.x[idx]).movedim(-1, 1).float() / 255.0
    x = x * torch.empty(len(idx), 1, 1, 1).uniform_(0.9, 1.1)  # light jitter: do not key on exact pixels
    p = detector.normalise(data.p[idx], len(idx)) if data.p is not None else None
    out = detector.net.outputs(x, p)
    loss = F.binary_cross_entropy_with_logits(out[:, 0], torch.from_numpy(data.y[idx]))
    if data.m is not None:
        loss = loss + detector.cfg.metric_weight * F.smooth_l1_loss(out[:, 1], torch.from_numpy(data.m[idx]))
    return loss


def fit(detector: LearnedDetector, episodes: Sequence[Outcome], cfg: DetectorTrainConfig) -> dict[str, float]:
    """Train the net on ``episodes``' frames in :func:`hiwm.training.train_loop` (AdamW, cosine rate
    over ``cfg.steps``), on the CPU: so small a net gains nothing from a GPU."""
    torch.manual_seed(cfg.seed)
    data = Frames(episodes, detector.cfg, cfg.seed, cfg.margin)
    if detector.cfg.proprio_dim and not detector.cfg.proprio_mean:
        detector.cfg.proprio_mean = data.p.mean(0).tolist()  # type: ignore[union-attr]
        detector.cfg.proprio_std = (data.p.std(0) + 1e-6).tolist()  # type: ignore[union-attr]
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    net = detector.net
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    try:
        done = train_loop(
            "detector",
            net,
            lambda: batch_loss(detector, data, cfg.batch),
            opt,
            Budget(cfg.steps, lr=cfg.lr),
            Ranks(),
            leave=False,
            log_every=50,
        )
    finally:
        torch.set_num_threads(threads)
    net.eval()
    return {"steps": done.steps, "loss": done.loss, "frames": len(data.y), "success_frames": len(data.pos)}


# -- calibration and figures -------------------------------------------------------------------
def brier(p: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((np.asarray(p, dtype=np.float64) - np.asarray(y, dtype=np.float64)) ** 2))


def ece(p: np.ndarray, y: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error: |mean p - frequency| per equal-width bin, weighted by bin size."""
    p, y = np.asarray(p, dtype=np.float64), np.asarray(y, dtype=np.float64)
    which = np.minimum((p * bins).astype(int), bins - 1)
    return float(sum(abs(p[which == b].mean() - y[which == b].mean()) * np.mean(which == b) for b in np.unique(which)))


def platt(logits: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(scale, bias) minimising the cross-entropy of sigmoid(scale * logit + bias) on these labels,
    with Platt's targets (N+ + 1) / (N+ + 2) and 1 / (N- + 2) instead of 1 and 0, which keep the fit
    finite (and the probabilities short of certainty) when the few held-out episodes are separable."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    positive = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    y = torch.as_tensor(np.where(positive, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2)), dtype=torch.float64)
    params = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([params], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(params[0] * z + params[1], y)
        loss.backward()
        return loss

    opt.step(closure)
    scale, bias = params.detach().tolist()
    return float(scale), float(bias)


def evaluate(detector: SuccessDetector, episodes: Sequence[Outcome]) -> dict[str, float]:
    """Episode agreement at the detector's threshold, episode Brier and ECE of the highest probability
    (the episode's probability of success), and frame Brier against the per-frame labels."""
    probs = [detector.probability(e.frames, e.proprio) for e in episodes]
    best = np.array([q.max() for q in probs])
    real = np.array([e.success for e in episodes])
    return {
        "episodes": len(episodes),
        "successes": int(real.sum()),
        "agreement": float(np.mean((best > detector.threshold) == real)),
        "brier": brier(best, real),
        "ece": ece(best, real),
        "frame_brier": brier(np.concatenate(probs), np.concatenate([e.labels for e in episodes])),
    }


def calibrate(detector: LearnedDetector, episodes: Sequence[Outcome]) -> dict[str, float]:
    """On held-out episodes: Platt scaling of the episode's highest logit against its outcome (the
    same map applies to every frame, so a frame's probability is that of "succeeded by now"), then
    the verdict's threshold on the calibrated probability, fitted as the probe's is on its metric."""
    from hiwm.world_model.verdict import fit_threshold

    best = np.array([float(np.max(detector.logits(e.frames, e.proprio))) for e in episodes])
    real = np.array([e.success for e in episodes])
    if real.all() or not real.any():
        raise ValueError("calibration needs successful and failed episodes both")
    detector.cfg.scale, detector.cfg.bias = platt(best, real)
    calibrated = 1.0 / (1.0 + np.exp(-np.clip(detector.cfg.scale * best + detector.cfg.bias, -60, 60)))
    detector.threshold, agree = fit_threshold(calibrated, real)
    return {"episodes": len(episodes), "scale": detector.cfg.scale, "bias": detector.cfg.bias,
            "threshold": detector.threshold, "agreement": agree}  # fmt: skip


def train(
    episodes: Sequence[Outcome], cfg: DetectorConfig | None = None, train_cfg: DetectorTrainConfig | None = None
) -> tuple[LearnedDetector, dict[str, Any]]:
    """Split, train, calibrate; the figures on the held-out test episodes before and after calibration."""
    train_cfg = train_cfg or DetectorTrainConfig()
    cfg = cfg or DetectorConfig()
    if cfg.proprio_dim == 0 and episodes and episodes[0].proprio is not None:
        cfg.proprio_dim = episodes[0].proprio.shape[1]
    tr, cal, test = split(episodes, (train_cfg.calibration_fraction, train_cfg.test_fraction), train_cfg.seed)
    # calibrated and judged on episodes as the real world ends them
    cal, test = [e.until_success() for e in cal], [e.until_success() for e in test]
    if not cal or not test:
        raise ValueError(f"too few episodes ({len(episodes)}) for a calibration and a test split")
    torch.manual_seed(train_cfg.seed)  # the net's initial weights too: the same run whatever ran before
    detector = LearnedDetector(cfg)
    metrics: dict[str, Any] = {"train": fit(detector, tr, train_cfg)}
    metrics["uncalibrated"] = evaluate(detector, test)
    metrics["calibration"] = calibrate(detector, cal)
    metrics["test"] = evaluate(detector, test)
    metrics["split"] = {"train": len(tr), "calibration": len(cal), "test": len(test)}
    return detector, metrics


def agreement_in_model(model: Any, detector: SuccessDetector, episodes: Sequence[Any]) -> dict[str, float]:
    """Open-loop replays of recorded episodes (:func:`hiwm.world_model.data.load_episodes`) in the world
    model: the detector's verdict on the generated frames (and the model's own proprio) against each
    episode's real outcome, beside the share of the commoner outcome (what a constant answer gets), and
    the balanced agreement (the mean of the successes' and the failures' agreement: 0.5 for a constant
    answer, whichever outcome is commoner)."""
    from hiwm.world_model.session import Session, model_world

    world = model_world(model.cfg)
    k = model.cfg.context
    verdicts, outcomes = [], []
    for ep in episodes:
        if len(ep.frames) <= k:
            continue
        s = Session(model)
        # the action before the first frame: the one holding still there, when the state says
        state = ep.states[0] if ep.states.size else None
        prev = ep.actions[k - 2] if k >= 2 else world.state_entries(state, world.task.action.names)
        s.reset(
            frames={name: v[:k] for (name, _, _), v in zip(model.cfg.camera_list, ep.views, strict=True)},
            prev_action=prev,
            proprio=None if ep.proprio is None else ep.proprio[k - 1],
        )
        frames, proprio = [], []
        for a in ep.actions[k - 1 :]:
            frames.append(s.step(a))
            proprio.append(s.proprio.copy())
        reads = np.stack(proprio) if model.cfg.proprio_dim else None
        verdicts.append(bool(detector.verdict(np.stack(frames), reads)))
        outcomes.append(bool(ep.success))
    said, real = np.asarray(verdicts, bool), np.asarray(outcomes, bool)
    n, wins = len(real), int(real.sum())
    recalls = [float((said[real == k] == k).mean()) for k in (True, False) if (real == k).any()]
    return {
        "episodes": n,
        "successes": wins,
        "agreement": float((said == real).mean()) if n else 0.0,
        "constant": majority_rate(wins, n),
        "balanced": float(np.mean(recalls)) if len(recalls) == 2 else float("nan"),
    }


def metric_target(task: Any) -> tuple[str, float]:
    """A task's success metric for the metric head and the scale that puts its threshold at 1."""
    return task.success.metric, abs(task.success.threshold) or 1.0


def for_task(task: Any) -> tuple[DetectorConfig, str]:
    """The learned detector its task describes (:class:`hiwm.tasks.base.LoopOptions`) and the metric
    its datasets must give (``""``: none), for :func:`load_outcomes` and :func:`train`."""
    loop = task.loop
    metric, scale = metric_target(task) if loop.detector_metric_weight > 0 else ("", 1.0)
    cfg = DetectorConfig(
        frames=loop.detector_frames,
        proprio_layers=loop.detector_proprio_layers,
        metric_weight=loop.detector_metric_weight,
        metric_scale=scale,
        score=loop.detector_score,
    )
    return cfg, metric


def run(
    data: Sequence[str],
    out: str,
    camera: str,
    proprio: bool,
    image_size: int,
    train_cfg: DetectorTrainConfig,
    metric: str = "",
    metric_weight: float = 0.0,
    metric_scale: float = 1.0,
    fields: dict[str, Any] | None = None,
) -> dict:
    """``hiwm train detector``: datasets -> a calibrated detector in ``out``; its figures. ``metric``
    (with ``metric_weight`` > 0) names the success metric its second head regresses, divided by
    ``metric_scale``; ``fields``: other :class:`DetectorConfig` fields."""
    episodes = load_outcomes(data, camera, proprio, metric if metric_weight > 0 else "")
    cfg = DetectorConfig(
        **{"image_size": image_size, "camera": camera, "metric_weight": metric_weight, "metric_scale": metric_scale,
           **(fields or {})}
    )  # fmt: skip
    detector, metrics = train(episodes, cfg, train_cfg)
    detector.save(out)
    Path(out, "metrics.json").write_text(json.dumps(metrics, indent=1))
    return metrics

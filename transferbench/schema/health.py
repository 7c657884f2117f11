"""Network health: did a trained network learn, judged from its record alone.

A network that failed to learn must never pass silently into a mean, a figure or a
reading. ``judge`` looks at the last evaluations and training losses of one network and
returns a ``Health``:

| state            | meaning                                                                    | in means |
|------------------|----------------------------------------------------------------------------|----------|
| healthy          | learned, and flat at the end                                               | yes      |
| not_converged    | learned, but top-1 still rising clearly at the end: more iterations would move it | yes, flagged |
| stalled          | top-1 within ``chance_margin`` of chance, or the training loss within ``loss_margin`` of ln(classes), over the last ``window`` evaluations | no       |
| diverged         | the loss went NaN/inf (the worker already stops such a run as failed)      | no       |
| source_unhealthy | copied its layers from a network that is stalled or diverged               | no       |

The thresholds are ``HealthSettings`` (the ``[health]`` table of a study config). Their
defaults were chosen from measurements (``benchmarks/RESULTS.md``, "Network health"): on
the built-in data every stalled network sat within 0.02 of chance with its loss within 1%
of ln(classes), and every learning one was at least 0.15 above chance; none of the
authors' 170 Caffe networks comes near either line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

HEALTH_STATES = ("healthy", "not_converged", "stalled", "diverged", "source_unhealthy")
EXCLUDED = frozenset({"stalled", "diverged", "source_unhealthy"})  # left out of means, intervals, tables, readings


@dataclass(frozen=True)
class HealthSettings:
    """Thresholds of ``judge`` (config table ``[health]``)."""

    window: int = 3  # how many of the last evaluations a stall is judged over
    chance_sigmas: float = 3.0  # stalled: the best top-1 of the window is within this many standard errors of chance
    loss_margin: float = 0.002  # stalled: the mean training loss of the window is within this fraction of ln(classes)
    tail: float = 0.25  # not converged: judged over the evaluations of the last `tail` of the iterations
    still_rising: float = 0.03  # not converged: a straight-line fit of top-1 over the tail rises by more than this

    def __post_init__(self) -> None:
        from transferbench.errors import UserError

        if self.window < 1:
            raise UserError(f"health.window must be at least 1, got {self.window}")
        if not (math.isfinite(self.chance_sigmas) and self.chance_sigmas >= 0):
            raise UserError(f"health.chance_sigmas must be a number >= 0, got {self.chance_sigmas}")
        for name in ("loss_margin", "still_rising"):
            value = getattr(self, name)
            if not (math.isfinite(value) and 0 <= value < 1):
                raise UserError(f"health.{name} must be in [0, 1), got {value}")
        if not 0 < self.tail <= 1:
            raise UserError(f"health.tail must be in (0, 1], got {self.tail}")


@dataclass(frozen=True)
class Health:
    state: str
    reason: str | None = None  # what the judgment rests on, in one line

    @property
    def excluded(self) -> bool:
        return self.state in EXCLUDED

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "reason": self.reason}


def rise_over_tail(evaluations: Sequence[tuple[float, float]], tail: float) -> tuple[float, int] | None:
    """(rise, points): how much a least-squares line through the (iteration, top-1) points of the
    last ``tail`` of the iterations climbs over that span; None with fewer than 3 points."""
    if not evaluations:
        return None
    last = evaluations[-1][0]
    start = last - tail * last
    points = [(i, t) for i, t in evaluations if i >= start]
    if len(points) < 3:
        return None
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return None
    slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread
    return slope * (xs[-1] - xs[0]), len(points)


def chance_line(num_classes: int, val_images: int, sigmas: float) -> float:
    """The top-1 a network that guesses stays below, bar a 1 in ~700 chance (3 sigma): chance plus
    ``sigmas`` standard errors of a top-1 measured on ``val_images`` images."""
    chance = 1.0 / num_classes
    return chance + sigmas * math.sqrt(chance * (1 - chance) / max(1, val_images))


def judge(evaluations: Sequence[tuple[float, float]], train_loss: Sequence[tuple[float, float]], num_classes: int,
          val_images: int, settings: HealthSettings = HealthSettings(), failure: str | None = None) -> Health:
    """The health of one network from its (iteration, top-1) evaluations and (iteration, loss)
    training losses; ``failure`` is the reason a failed run stopped (the worker fails a run
    whose loss is not finite, so a failed run is judged diverged)."""
    if failure is not None:
        return Health("diverged", failure)
    if any(not math.isfinite(loss) for _, loss in train_loss) or any(not math.isfinite(t) for _, t in evaluations):
        return Health("diverged", "a loss or top-1 is not finite")
    if not evaluations:
        return Health("healthy", "no evaluation to judge")
    window = list(evaluations[-settings.window:])
    best, line = max(t for _, t in window), chance_line(num_classes, val_images, settings.chance_sigmas)
    if best < line:
        return Health("stalled", f"top-1 at most {best:.4f} over the last {len(window)} evaluations: no better than "
                                 f"guessing among {num_classes} classes ({1 / num_classes:.4f}, or up to {line:.4f} "
                                 f"by chance on {val_images} images)")
    start = evaluations[-len(window) - 1][0] if len(evaluations) > len(window) else 0
    losses = [loss for i, loss in train_loss if i > start]  # the iterations the window's evaluations follow
    if losses and num_classes > 1:
        mean_loss, ceiling = sum(losses) / len(losses), math.log(num_classes)
        if abs(mean_loss - ceiling) < settings.loss_margin * ceiling:
            return Health("stalled", f"training loss {mean_loss:.4f} over the last {len(window)} evaluations: what "
                                     f"guessing gives (ln {num_classes} = {ceiling:.4f})")
    rise = rise_over_tail(evaluations, settings.tail)
    if rise is not None and rise[0] > settings.still_rising:
        return Health("not_converged", f"top-1 still rising by {rise[0]:.3f} over the last {settings.tail:.0%} "
                                       f"of training ({rise[1]} evaluations)")
    return Health("healthy")


def judge_record(record, settings: HealthSettings = HealthSettings()) -> Health:
    """``judge`` on a ResultRecord."""
    evaluations = [(e["iteration"], e["top1"]) for e in record.evaluations]
    num_classes = int(record.spec.get("model", {}).get("num_classes", 2))
    failure = record.reason or "failed" if record.status == "failed" else None
    return judge(evaluations, [tuple(p) for p in record.train_loss], num_classes, record.val_images, settings, failure)

"""Network health: did a trained network learn, judged from its record alone.

A network that failed to learn must never pass silently into a mean, a figure or a reading;
a network that learned what its frozen features allow, even if that is nothing, is a result.
``judge`` looks at the evaluations and training losses of one network and returns a ``Health``:

| state            | meaning                                                                          | in means |
|------------------|----------------------------------------------------------------------------------|----------|
| healthy          | learned, and flat at the end                                                     | yes      |
| not_converged    | learned, but top-1 still rising clearly at the end: more iterations would move it | yes, flagged |
| at_chance        | a network with frozen layers (AnB, BnB, Rn, AnB^k) whose top-1 stays at chance: its frozen features carry nothing the new layers can use. A finding (the paper's R3..R7), not a failure | yes, marked |
| stalled          | a network whose every layer trains (a base, a fine-tuned or grown one) that never learned: top-1 at chance, or top-1 and training loss no better at the end than at the start | no |
| diverged         | the loss went NaN/inf (the worker already stops such a run as failed)            | no       |
| source_unhealthy | copied its layers from a network that is stalled or diverged                     | no       |

*Chance* is the majority-class rate of the evaluation set (``chance_top1`` in the record; 1/C
for a balanced set): a network collapsed onto the largest class is at chance, however many
classes there are. *At chance* means the best top-1 of the last ``window`` evaluations stays
below chance plus ``chance_sigmas`` standard errors of a top-1 measured on that many images.
The training loss never overrules top-1: a network clearly above chance learned, whatever its
loss (the paper's R7: top-1 0.0146, 14.6 times chance, with a loss at ln 1000). It tells a
network that *never learned* (trained at a rate too small to move it: flat from its first
evaluation, loss unchanged) from one that learned before its first evaluation.

The thresholds are ``HealthSettings`` (the ``[health]`` table of a study config).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

HEALTH_STATES = ("healthy", "not_converged", "at_chance", "stalled", "diverged", "source_unhealthy")
EXCLUDED = frozenset({"stalled", "diverged", "source_unhealthy"})  # left out of means, intervals, tables, readings


@dataclass(frozen=True)
class HealthSettings:
    """Thresholds of ``judge`` (config table ``[health]``)."""

    window: int = 3  # how many of the last evaluations a stall is judged over
    chance_sigmas: float = 3.0  # at chance: the best top-1 of the window is within this many standard errors of chance
    loss_margin: float = 0.01  # never learned: the training loss at the end is within this fraction of the loss at the start
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


def chance_line(chance: float, val_images: int, sigmas: float) -> float:
    """The top-1 a network that guesses stays below, bar a 1 in ~700 chance (3 sigma): ``chance``
    (the majority-class rate) plus ``sigmas`` standard errors of a top-1 measured on ``val_images`` images."""
    return chance + sigmas * math.sqrt(chance * (1 - chance) / max(1, val_images))


def _mean_loss(train_loss: Sequence[tuple[float, float]], low: float, high: float) -> float | None:
    values = [loss for i, loss in train_loss if low < i <= high]
    return sum(values) / len(values) if values else None


def judge(evaluations: Sequence[tuple[float, float]], train_loss: Sequence[tuple[float, float]], num_classes: int,
          val_images: int, settings: HealthSettings = HealthSettings(), failure: str | None = None,
          chance: float | None = None, frozen: bool = False) -> Health:
    """The health of one network from its (iteration, top-1) evaluations and (iteration, loss)
    training losses. ``chance``: the majority-class rate of its evaluation set (default 1/C);
    ``frozen``: whether some of its layers are frozen (then top-1 at chance is a finding);
    ``failure``: the reason a failed run stopped (the worker fails a run whose loss is not
    finite, so a failed run is judged diverged)."""
    if failure is not None:
        return Health("diverged", failure)
    if any(not math.isfinite(loss) for _, loss in train_loss) or any(not math.isfinite(t) for _, t in evaluations):
        return Health("diverged", "a loss or top-1 is not finite")
    if not evaluations:
        return Health("healthy", "no evaluation to judge")
    chance = 1.0 / num_classes if chance is None else chance
    window = list(evaluations[-settings.window:])
    best, line = max(t for _, t in window), chance_line(chance, val_images, settings.chance_sigmas)
    if best < line:
        guess = "always the largest class" if chance > 1.0 / num_classes + 1e-9 else f"1 of {num_classes} classes"
        at = (f"top-1 at most {best:.4f} over the last {len(window)} evaluations: no better than guessing "
              f"(chance {chance:.4f}: {guess}; up to {line:.4f} by chance on {val_images} images)")
        if frozen:
            return Health("at_chance", f"{at}; its frozen features carry nothing the trained layers can use (a finding, "
                                       "kept in means)")
        return Health("stalled", at)
    if not frozen:
        first_iteration, first_top1 = evaluations[0]
        start = _mean_loss(train_loss, 0, first_iteration)
        end = _mean_loss(train_loss, evaluations[-len(window) - 1][0] if len(evaluations) > len(window) else 0,
                         evaluations[-1][0])
        rise = best - first_top1
        if start is not None and end is not None and len(evaluations) > len(window) \
                and end > start * (1 - settings.loss_margin) \
                and rise < settings.chance_sigmas * math.sqrt(max(best * (1 - best), 1e-12) / max(1, val_images)):
            return Health("stalled", f"never learned: top-1 {first_top1:.4f} at its first evaluation and {best:.4f} at the "
                                     f"end, training loss {start:.4f} at the start and {end:.4f} at the end; check the "
                                     "recipe (a learning rate too small to move the network?) before another seed")
    rise = rise_over_tail(evaluations, settings.tail)
    if rise is not None and rise[0] > settings.still_rising:
        return Health("not_converged", f"top-1 still rising by {rise[0]:.3f} over the last {settings.tail:.0%} "
                                       f"of training ({rise[1]} evaluations)")
    return Health("healthy")


def frozen_condition(condition: dict[str, Any] | str | None, fine_tune: Any = None) -> bool:
    """Whether a network keeps some layers frozen: a spec's condition dict, or a CSV row's
    condition name and fine_tune flag."""
    if isinstance(condition, dict):
        kind, fine_tune = condition.get("kind"), condition.get("fine_tune")
    else:
        kind = condition
    return kind in ("selffer", "transfer", "random_init", "preserved") and not int(fine_tune or 0) and kind is not None


def judge_record(record, settings: HealthSettings = HealthSettings()) -> Health:
    """``judge`` on a ResultRecord."""
    evaluations = [(e["iteration"], e["top1"]) for e in record.evaluations]
    num_classes = int(record.spec.get("model", {}).get("num_classes", 2))
    failure = record.reason or "failed" if record.status == "failed" else None
    frozen = frozen_condition(record.spec.get("condition")) and record.spec.get("growth") is None
    return judge(evaluations, [tuple(p) for p in record.train_loss], num_classes, record.val_images, settings, failure,
                 record.chance_top1, frozen)

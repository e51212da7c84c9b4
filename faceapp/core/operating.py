"""Operating points for 1:N identification that hold at any gallery size.

A named point promises a false positive identification rate (FPIR): the share of
strangers, people not in the gallery, who get a name. A search keeps the best of N
people, so the score a stranger's best match reaches rises with N (and with the
samples behind each person's template); the threshold for one FPIR must rise too.

The model pack's manifest holds, per variant, what `python -m trainer evaluate
--benchmark lfw-1n --update-manifest` measured on LFW 1:N (trainer/identification.py):
- for 1, 2, 3 and 5 samples per person and gallery sizes from 1 to 1,680 people,
  the decision-score threshold at each FPIR of a grid, and the share of enrolled
  people named correctly there (DIR);
- the weight of the runner-up in the decision score,
  `score - weight(N) * runner_up`: nothing for small galleries, growing with log N,
  because in large galleries a close runner-up is what a stranger's match looks like;
- the same tables for the plain best score (weight 0), which a custom cosine uses and
  which tells "below threshold" from "ambiguous".
Between measured sizes the thresholds are interpolated in log N; past the largest
size measured for a sample count they follow the single-sample table's slope.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .models import ModelPack, ModelPackError

# The named operating points: the share of strangers who may get a name.
NAMED_POINTS = {"strict": 0.001, "balanced": 0.01, "lenient": 0.05}
# The rates a custom point may ask for: the span the packs' calibrations measure
# (1 in 2,000 to 1 in 5 strangers); what the app offers on one scale with the named ones.
RATE_RANGE = (0.0005, 0.2)


def one_in(fpir: float) -> int:
    """A rate as "1 in N": the N (2 for one half, 1,000 for 0.001)."""
    return max(1, round(1.0 / float(fpir)))


def rate_words(fpir: float) -> str:
    """A rate as people say it: "about 1 in 1,000"."""
    return f"about 1 in {one_in(fpir):,}"


@dataclass(frozen=True)
class OperatingPoint:
    """What the user chose: a named point, a target FPIR, or a raw cosine."""
    name: str | None = "balanced"
    fpir: float | None = None
    cosine: float | None = None

    def __post_init__(self):
        if self.name is not None and self.fpir is None:
            if self.name not in NAMED_POINTS:
                raise ValueError(f"unknown operating point {self.name!r}")
            object.__setattr__(self, "fpir", NAMED_POINTS[self.name])

    @classmethod
    def one_in(cls, n: float) -> "OperatingPoint":
        """A custom point on the named points' scale: about 1 stranger in `n` named
        (clamped to RATE_RANGE, what the calibrations measure)."""
        fpir = min(max(1.0 / float(n), RATE_RANGE[0]), RATE_RANGE[1])
        for name, rate in NAMED_POINTS.items():
            if math.isclose(rate, fpir):
                return cls(name=name, fpir=rate)
        return cls(name=None, fpir=fpir)

    @classmethod
    def parse(cls, value: str | float | None) -> "OperatingPoint":
        if value is None:
            return cls()
        if isinstance(value, OperatingPoint):
            return value
        if isinstance(value, str) and value in NAMED_POINTS:
            return cls(name=value, fpir=NAMED_POINTS[value])
        if isinstance(value, str) and value.lower().startswith("1in"):
            return cls.one_in(float(value[3:].strip(" =:")))
        if isinstance(value, str) and value.lower().startswith("fpir="):
            fpir = float(value.split("=", 1)[1])
            if not 0 < fpir < 1:
                raise ValueError(f"FPIR {fpir} is not between 0 and 1")
            return cls(name=None, fpir=fpir)
        try:
            cosine = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"unknown operating point {value!r} (choose "
                             f"{', '.join(NAMED_POINTS)}, fpir=RATE, 1in=N or a cosine)") \
                from None
        if not -1.0 <= cosine <= 1.0:
            raise ValueError(f"cosine threshold {cosine} is not between -1 and 1")
        return cls(name=None, cosine=cosine)

    def __str__(self) -> str:
        if self.name:
            return self.name
        return f"fpir={self.fpir:g}" if self.fpir is not None else f"{self.cosine:.3f}"


@dataclass(frozen=True)
class DecisionRule:
    """The point resolved for one gallery: accept when
    `score - runner_up_weight * runner_up >= threshold`."""
    threshold: float
    runner_up_weight: float
    plain_threshold: float  # the same FPIR on the best score alone
    fpir: float | None  # expected share of strangers named (None: not calibrated)
    miss: float | None  # expected share of enrolled people not named (from LFW)
    people: int
    samples_per_person: float
    # raised by this much because the gallery's own photos showed its people resemble
    # each other more than the calibration's (population.py); miss is then unknown
    population_shift: float = 0.0

    def decision_score(self, score: float, runner_up: float | None) -> float:
        return score - self.runner_up_weight * (runner_up if runner_up is not None else 0.0)


class _Table:
    """One sample count's measurements: sizes x FPIR grid."""

    def __init__(self, entry: dict, fpirs: np.ndarray):
        self.samples = float(entry["samples_per_person"])
        self.people = np.asarray(entry["people"], np.float64)
        self.values = {key: np.asarray(entry[key], np.float64)
                       for key in ("decision", "plain", "decision_dir", "plain_dir")}
        for key, value in self.values.items():
            if value.shape != (len(self.people), len(fpirs)):
                raise ValueError(f"'{key}' is {value.shape}, not sizes x FPIR grid")
        if np.any(np.diff(self.people) <= 0):
            raise ValueError("gallery sizes are not increasing")


class Calibration:
    """A pack's identification calibration for one variant (and flip setting)."""

    def __init__(self, spec: dict, source: str = ""):
        try:
            self.fpirs = np.asarray(spec["fpir"], np.float64)
            weight = spec["runner_up_weight"]
            self.weight_per_decade = float(weight["per_decade"])
            self.weight_from = float(weight["from_people"])
            self.weight_max = float(weight["max"])
            self.tables = sorted((_Table(t, self.fpirs) for t in spec["tables"]),
                                 key=lambda t: t.samples)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelPackError(f"{source}: damaged identification calibration ({exc})") \
                from None
        if not self.tables or np.any(np.diff(self.fpirs) <= 0):
            raise ModelPackError(f"{source}: identification calibration has no tables or "
                                 "an unsorted FPIR grid")
        self.widest = max(self.tables, key=lambda t: t.people[-1])
        self.measured_on = spec.get("measured_on", "")

    @classmethod
    def from_pack(cls, pack: ModelPack, setting: str) -> "Calibration":
        """`setting`: a variant and flip setting as embed.setting_key names it."""
        spec = pack.manifest.get("identification", {}).get(setting)
        if not spec:
            variant, _, flip = setting.partition("+")
            raise ModelPackError(
                f"model pack '{pack.name}' has no identification calibration for {setting}; "
                f"run `python -m trainer evaluate --model {pack.name} --benchmark lfw-1n "
                f"--variant {variant}{' --' + flip if flip else ''} --update-manifest`")
        return cls(spec, f"model pack '{pack.name}' ({setting})")

    def runner_up_weight(self, people: int) -> float:
        if people <= self.weight_from:
            return 0.0
        return min(self.weight_max, self.weight_per_decade * math.log10(people / self.weight_from))

    def _row(self, table: _Table, key: str, people: float) -> np.ndarray:
        """One table's row for a gallery size, interpolated in log N."""
        values, sizes = table.values[key], table.people
        n = max(float(people), sizes[0])
        if n <= sizes[-1]:
            x = np.log(sizes)
            return np.array([np.interp(math.log(n), x, col) for col in values.T])
        # Past what this sample count measured: follow the widest table's growth.
        grow = self._row(self.widest, key, n) - self._row(self.widest, key, sizes[-1]) \
            if table is not self.widest else self._extrapolate(table, key, n)
        return values[-1] + grow

    @staticmethod
    def _extrapolate(table: _Table, key: str, n: float) -> np.ndarray:
        sizes, values = table.people, table.values[key]
        if len(sizes) < 2:
            return np.zeros(values.shape[1])
        slope = (values[-1] - values[-2]) / (math.log(sizes[-1]) - math.log(sizes[-2]))
        if key.endswith("_dir"):
            slope = np.minimum(slope, 0.0)  # more people never make naming easier
        return slope * (math.log(n) - math.log(sizes[-1]))

    def _grid(self, key: str, people: int, samples: float) -> np.ndarray:
        """Values over the FPIR grid for this gallery, interpolated in samples."""
        samples = min(max(samples, self.tables[0].samples), self.tables[-1].samples)
        for low, high in zip(self.tables, self.tables[1:]):
            if low.samples <= samples <= high.samples:
                w = (samples - low.samples) / max(high.samples - low.samples, 1e-9)
                row = (1 - w) * self._row(low, key, people) + w * self._row(high, key, people)
                break
        else:
            row = self._row(self.tables[0], key, people)
        if key.endswith("_dir"):
            return np.clip(row, 0.0, 1.0)
        # thresholds fall as the allowed FPIR grows; interpolation keeps that order
        return np.minimum.accumulate(row)

    def _at_fpir(self, key: str, fpir: float, people: int, samples: float) -> float:
        row = self._grid(key, people, samples)
        return float(np.interp(math.log(fpir), np.log(self.fpirs), row))

    def fpir_of(self, key: str, threshold: float, people: int, samples: float) -> float:
        """The FPIR a threshold on `key`'s score gives (clamped to the measured grid)."""
        row = self._grid(key, people, samples)  # decreasing in FPIR
        log_fpir = np.interp(-threshold, -row, np.log(self.fpirs))
        return float(math.exp(log_fpir))

    def rule(self, point: OperatingPoint, people: int, samples: float) -> DecisionRule:
        people = max(int(people), 1)
        if point.cosine is not None:
            fpir = self.fpir_of("plain", point.cosine, people, samples)
            miss = 1 - self._at_fpir("plain_dir", fpir, people, samples)
            return DecisionRule(point.cosine, 0.0, point.cosine, fpir, miss, people, samples)
        fpir = float(point.fpir)
        return DecisionRule(
            threshold=self._at_fpir("decision", fpir, people, samples),
            runner_up_weight=self.runner_up_weight(people),
            plain_threshold=self._at_fpir("plain", fpir, people, samples),
            fpir=fpir, miss=1 - self._at_fpir("decision_dir", fpir, people, samples),
            people=people, samples_per_person=samples)

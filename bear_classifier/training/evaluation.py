"""What `python -m bear_classifier.training.evaluate` measured, as one record that the model card, the markdown tables and
the research scripts read by attribute, and that runs/.../evaluation.json holds (`to_dict` / `from_dict`).

Plain values only (no torch, no fastai): the card, on the serving side, reads it too.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field


def wilson(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion: with a few hundred photos, one or two photos more
    or less move a rate by about half a point, so rates are compared with their intervals."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclass(frozen=True)
class Share:
    """`k` of `n` photos: answered right (`Answers`) or flagged out of domain. Counts, not a rate, so that
    the record says how many photos a rate stands on."""

    n: int
    k: int

    @property
    def rate(self) -> float | None:
        """None when there were no photos."""
        return self.k / self.n if self.n else None

    def interval(self) -> tuple[float, float]:
        return wilson(self.k, self.n)


@dataclass(frozen=True)
class Answers(Share):
    """The answers on one set of photos: `k` right, and the confusion counts (true label -> predicted -> count)."""

    confusion: dict[str, dict[str, int]]


@dataclass(frozen=True)
class OutOfDomain:
    """An out-of-domain guard's flags per set of photos; None or empty where a set was not there."""

    valid: Share
    external_bears: Share | None
    not_bears: dict[str, Share]
    """Source folder -> its not-bear photos flagged."""

    @classmethod
    def from_dict(cls, d: dict) -> OutOfDomain:
        return cls(
            valid=Share(**d["valid"]),
            external_bears=Share(**d["external_bears"]) if d["external_bears"] else None,
            not_bears={source: Share(**share) for source, share in d["not_bears"].items()},
        )


@dataclass(frozen=True)
class Entry:
    """One rung of the baseline ladder (pixel similarity, zero-shot, the model) on each set of photos."""

    name: str
    note: str = ""
    valid: Answers | None = None
    """None when it cannot classify (a zero-shot network whose ImageNet classes map onto no label)."""
    external_bears: Answers | None = None
    ood: OutOfDomain | None = None
    """None when it has no out-of-domain guard."""
    mapping: dict[str, list[str] | str] = field(default_factory=dict)
    """The zero-shot network's: label -> the ImageNet classes that stand for it, or why none does."""

    @classmethod
    def from_dict(cls, d: dict) -> Entry:
        answers = {key: Answers(**d[key]) if d[key] else None for key in ("valid", "external_bears")}
        ood = OutOfDomain.from_dict(d["ood"]) if d["ood"] else None
        return cls(name=d["name"], note=d["note"], **answers, ood=ood, mapping=d["mapping"])


@dataclass(frozen=True)
class DataSplit:
    """The training folder and the training run's split of it, re-made from its seed."""

    dir: str
    seed: int
    valid_pct: float
    n_train: int
    n_valid: int
    counts: dict[str, int]
    """Label -> photos, training and validation together."""


@dataclass(frozen=True)
class External:
    """The evaluation-only folders; `dir` None and the counts empty when none was given."""

    dir: str | None
    bears: dict[str, int]
    """Label -> photos."""
    not_bears: dict[str, int]
    """Source folder -> photos."""
    half: str | None = None
    """The half of `dir` measured (`data.external_half`); None: every photo."""


@dataclass(frozen=True)
class GuardFacts:
    """The model's own out-of-domain guard, as model.pkl holds it."""

    kind: str
    threshold: float
    quantile: float
    size: int
    """The input size it reads."""
    in_domain: list[str]
    """The ImageNet classes that count as in domain."""


@dataclass(frozen=True)
class ModelFile:
    path: str
    sha256: str


@dataclass(frozen=True)
class Evaluation:
    """The baseline ladder and the guards of one model, on the training run's validation split and the external sets."""

    vocab: list[str]
    data: DataSplit
    external: External
    model: Entry
    pixels: Entry | None = None
    """The baselines; None when measured without them (`--no-baselines`)."""
    zero_shot: Entry | None = None
    guard: GuardFacts | None = None
    """None when the model has no out-of-domain guard."""
    model_file: ModelFile | None = None
    """The model.pkl measured; None for a learner measured in memory."""

    @property
    def ladder(self) -> list[Entry]:
        """The entries, simplest first."""
        return [entry for entry in (self.pixels, self.zero_shot, self.model) if entry]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Evaluation:
        """An evaluation written by `to_dict`, e.g. read back from runs/.../evaluation.json."""
        try:
            return cls(
                vocab=d["vocab"],
                data=DataSplit(**d["data"]),
                external=External(**d["external"]),
                model=Entry.from_dict(d["model"]),
                pixels=Entry.from_dict(d["pixels"]) if d["pixels"] else None,
                zero_shot=Entry.from_dict(d["zero_shot"]) if d["zero_shot"] else None,
                guard=GuardFacts(**d["guard"]) if d["guard"] else None,
                model_file=ModelFile(**d["model_file"]) if d["model_file"] else None,
            )
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"not an evaluation written by this version of bear_classifier.training.evaluate ({error!r}): measure the "
                "model again with `python -m bear_classifier.training.evaluate --json ...`"
            ) from error

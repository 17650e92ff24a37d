"""Which candidate model ships: the rule, written down before anything was measured (issue 31).

training.ipynb measures every candidate on the same photos: the selection half of `select_dir` (`data.external_half`),
or the validation split when no `select_dir` is given. The candidates: the zero-shot reading at each size tried (one
pass, or the answer at another size with the guard on a second pass), the fine-tune from the zero-shot head and its
WiSE-FT shares (share 0 is the zero-shot reading itself), and the course's own recipe at the course's settings.
Then `choose`:

1. Never below the zero-shot reading: no candidate with fewer photos right than the best zero-shot reading. When a
   class maps onto no ImageNet class (or no size was tried) there is no zero-shot reading, and the reason says so.
2. The most photos right. Candidates within `TIE` photos of the best are tied.
3. The guard's targets, among the tied only: at most `MAX_IN_DOMAIN_FLAGGED` of the in-domain photos flagged, give
   or take `TIE` photos (an in-domain photo flagged is a visitor not answered, counted like a photo wrong: on 39
   photos 2% allows no flag at all, and the fork of issue 31 shipped a model 10 points less accurate on its test
   photos for one flag), and at least `MIN_OUT_OF_DOMAIN_FLAGGED` of every not-in-domain folder. The tied ones that
   miss them are left out, unless all do (then all stay, and the reason says so). The guard never costs more than
   `TIE` photos of accuracy: a guard is fitted apart from the answer (its figures and a miss are reported), while a
   less accurate model is wrong for every visitor.
4. Of those, the one-pass candidate, then the higher WiSE-FT share (the course's recipe counts as share 1), then the
   more photos right, then the earlier in the table.

Plain numbers only: the rule is unit-tested on constructed candidates (tests/test_choice.py), and the card renders
the table without the training side.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

MAX_IN_DOMAIN_FLAGGED = 0.02
MIN_OUT_OF_DOMAIN_FLAGGED = 0.98
TIE = 1
"""Candidates this many photos right or fewer below the best are tied."""
MAX_MAPPED = 10
"""A class that more ImageNet classes than this stand for is warned about: the reading is a guess."""
MAX_THRESHOLD = 0.99
MAX_VALID_FLAGGED = 0.10

# The guards' settings (`imagenet.fit_guard`), beside the words that describe them to the card's readers.
GUARD_MIN_MASS = 0.003
"""An ImageNet class is in domain for the guard when its mean probability over the training photos
of one of our classes is at least this. Lower than the mapping's, so that the classes a few odd photos
carry count too, and so do classes spread thin over many photos. On the shipped training photos: "hair slide",
"hamper", "wool" and "toy poodle" for teddies (one teddy gives toy poodle 0.27); "siamang" for black bears (one
photo gives it 0.20); and "wild boar" for black bears and grizzlies, although no training photo shows a boar: it is
spread thin (mean 0.003, at most 0.065 on any one photo; `python -m research.guard_classes`). The guard table
(BENCHMARKS.md) has the settings tried; this one alone met both targets on the whole external set."""
GUARD_CARRY = 0.1
"""A photo carries an ImageNet class when the network gives that class at least this probability..."""
GUARD_SHARE = 0.1
"""...and the class is in domain for the guard (`ImageNetGuard.from_shares`) only when at least this share of
one label's training photos carry it: neither a few odd photos (the siamang of one black-bear photo, the toy poodle
of one teddy) nor a class spread thin over many (wild boar) make their class in domain."""
GUARD_QUANTILE = 0.99
"""`from_shares`' threshold: this quantile of the training photos' own scores, so that the odd photos,
which the shares leave out of domain, do not set it."""

GUARD_RULES = {
    "shares, 99th percentile": f"in domain: the ImageNet classes that at least {GUARD_SHARE:.0%} of one label's training "
    f"photos give {GUARD_CARRY:g} or more, and each label's top class; threshold: the "
    f"{GUARD_QUANTILE * 100:.0f}th percentile of the training photos' scores",
    "shares, highest": f"in domain: the ImageNet classes that at least {GUARD_SHARE:.0%} of one label's training photos "
    f"give {GUARD_CARRY:g} or more, and each label's top class; threshold: the highest training photo's score",
    "mass, highest": f"in domain: every ImageNet class with mean probability {GUARD_MIN_MASS:g} or more on one label's "
    "training photos (a few odd photos count, and so does a class spread thin over many photos); "
    "threshold: the highest training photo's score",
}
"""The guards tried (`imagenet.fit_guard`), in the order `best_guard` prefers them: each is fitted on the training photos alone, the
selection photos choose between them. Name -> what it is, for the model card."""


@dataclass(frozen=True)
class Candidate:
    """One candidate's numbers on the choosing photos (and on validation, shown beside them)."""

    name: str
    passes: int
    """Forward passes per photo: 1, or 2 when the guard reads another size than the answer."""
    share: float
    """The fine-tuned weights' share (WiSE-FT): 0 for a zero-shot reading, 1 for a plain fine-tune."""
    zero_shot: bool
    right: int
    """Choosing photos answered right..."""
    n: int
    """...of this many in-domain choosing photos."""
    flagged: int
    """In-domain choosing photos the guard flags."""
    out_of_domain: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Not-in-domain folder -> (photos flagged, photos)."""
    valid_right: int = 0
    valid_n: int = 0
    guard: str = ""
    """Which guard (classes and threshold) it was measured with."""
    threshold: float = 0.0

    @property
    def accuracy(self) -> float:
        return self.right / self.n if self.n else 0.0

    @property
    def flagged_rate(self) -> float:
        return self.flagged / self.n if self.n else 0.0

    @property
    def worst_out_of_domain(self) -> tuple[str, float] | None:
        """The not-in-domain folder flagged least, and its rate; None without such folders."""
        rates = {name: k / n for name, (k, n) in self.out_of_domain.items() if n}
        return min(rates.items(), key=lambda item: item[1]) if rates else None

    def to_dict(self) -> dict:
        """Plain lists and dicts, for a card's YAML front matter."""
        return {**asdict(self), "out_of_domain": {k: list(v) for k, v in self.out_of_domain.items()}}

    def guard_misses(self) -> list[str]:
        """The guard targets this candidate misses, in words (empty: it meets them)."""
        misses = []
        if self.flagged > MAX_IN_DOMAIN_FLAGGED * self.n + TIE:
            misses.append(
                f"flags {self.flagged}/{self.n} in-domain photos (at most {MAX_IN_DOMAIN_FLAGGED:.0%}, and {TIE} more)"
            )
        for name, (k, n) in self.out_of_domain.items():
            if n and k / n < MIN_OUT_OF_DOMAIN_FLAGGED:
                misses.append(f"flags {k}/{n} of `{name}` (at least {MIN_OUT_OF_DOMAIN_FLAGGED:.0%})")
        return misses


@dataclass(frozen=True)
class Choice:
    candidates: list[Candidate]
    chosen: Candidate
    reason: str
    on: str
    """What chose: "the selection half of <folder>" or "validation"."""

    def to_dict(self) -> dict:
        """Plain lists and dicts (the card's YAML front matter holds it; `from_dict` reads it back)."""
        candidates = [c.to_dict() for c in self.candidates]
        return {"candidates": candidates, "chosen": self.chosen.name, "reason": self.reason, "on": self.on}

    @classmethod
    def from_dict(cls, d: Mapping) -> Choice:
        candidates = [
            Candidate(**{**c, "out_of_domain": {k: tuple(v) for k, v in c["out_of_domain"].items()}})
            for c in d["candidates"]
        ]
        chosen = next(c for c in candidates if c.name == d["chosen"])
        return cls(candidates, chosen, d["reason"], d["on"])


def best_guard(readings: Sequence[Candidate]) -> Candidate:
    """Of one candidate measured with each guard tried (in `imagenet.GUARD_RULES`' order, same answers), the first
    that meets the guard's targets; when none does, the one that misses them by the least: the in-domain photos flagged
    past what `guard_misses` allows (its one-photo give included) plus the not-in-domain photos let through below the
    target, each as a share of its folder. Without not-in-domain photos
    (validation, or a `select_dir` of plain `<label>/` folders) nothing says what a guard should flag, and the
    loosest would always win: the first way then, the default."""
    if not any(c.out_of_domain for c in readings):
        return readings[0]

    def shortfall(c: Candidate) -> float:
        below = sum(max(0.0, MIN_OUT_OF_DOMAIN_FLAGGED - k / n) for k, n in c.out_of_domain.values() if n)
        over = max(0.0, c.flagged - MAX_IN_DOMAIN_FLAGGED * c.n - TIE) / c.n if c.n else 0.0
        return over + below

    return next((c for c in readings if not c.guard_misses()), None) or min(readings, key=shortfall)


def choose(candidates: Sequence[Candidate], on: str) -> Choice:
    """The candidate to ship, by the rule in this module's docstring, and the reason in words."""
    if not candidates:
        raise ValueError("no candidate to choose from: the notebook measured none")
    candidates = list(candidates)
    notes = []
    readings = [c for c in candidates if c.zero_shot]
    floor = max(readings, key=lambda c: c.right) if readings else None
    if floor is None:
        notes.append(
            "there is no zero-shot reading to stay above (a class maps onto no ImageNet class, or no size was tried)"
        )
    eligible = [c for c in candidates if floor is None or c.right >= floor.right]
    best = max(c.right for c in eligible)
    tied = [c for c in eligible if c.right >= best - TIE]
    pool = [c for c in tied if not c.guard_misses()]
    if not pool:
        pool = tied
        notes.append(f"no candidate within {TIE} photo of the best met the guard's targets on these photos")
    chosen = max(pool, key=lambda c: (c.passes == 1, c.share, c.right, -candidates.index(c)))
    why = [f"{chosen.right}/{chosen.n} right on {on}"]
    others = [c for c in pool if c is not chosen]
    if others:
        why.append(
            f"tied within {TIE} photo with {', '.join(c.name for c in others)}: one pass first, then the "
            "higher WiSE-FT share"
        )
    if floor is not None and floor is not chosen and floor.right != chosen.right:
        why.append(f"the best zero-shot reading ({floor.name}) has {floor.right}")
    trained = [c for c in candidates if not c.zero_shot]
    best_trained = max(trained, key=lambda c: c.right) if trained else None
    if chosen.zero_shot and best_trained and best_trained.right <= chosen.right:
        why.append(
            "nothing trained ships because no fine-tune beat the zero-shot reading here (best fine-tune: "
            f"{best_trained.name}, {best_trained.right}/{chosen.n})"
        )
    elif best_trained and best_trained.right > chosen.right:
        misses = "; ".join(best_trained.guard_misses())
        why.append(f"{best_trained.name} has {best_trained.right} but its guard misses its targets ({misses})")
    return Choice(candidates, chosen, "; ".join(why + notes) + ".", on)


def precision(fp32: Candidate, int8: Candidate, on: str) -> tuple[str, str]:
    """Which graphs serve the chosen model (issue 30): its int8 graphs (`quantize`) only when, on the choosing photos,
    they are no worse than its fp32 graphs on any figure (photos right, in-domain photos flagged, every not-in-domain
    folder's photos flagged); then speed decides, and int8 is the faster. Returns ("int8" or "fp32", the reason)."""
    worse = []
    if int8.right < fp32.right:
        worse.append(f"{int8.right} photos right against {fp32.right}")
    if int8.flagged > fp32.flagged:
        worse.append(f"{int8.flagged} in-domain photos flagged against {fp32.flagged}")
    for name, (k, n) in fp32.out_of_domain.items():
        if int8.out_of_domain.get(name, (0, n))[0] < k:
            worse.append(f"{int8.out_of_domain.get(name, (0, n))[0]}/{n} of `{name}` flagged against {k}/{n}")
    if worse:
        return "fp32", f"the int8 graphs are worse on {on}: {'; '.join(worse)}"
    return "int8", f"the int8 graphs are no worse than the fp32 ones on any figure of {on}, and faster"


def warnings(
    choice: Choice, mapping: Mapping[str, list[str] | str], threshold: float, valid_flagged: float | None
) -> list[str]:
    """What a student should look at (issue 31, item 5): said in the run's summary and in the card."""
    found = []
    readings = [c for c in choice.candidates if c.zero_shot]
    if readings:
        floor = max(c.right for c in readings)
        for c in choice.candidates:
            if not c.zero_shot and c.right < floor:
                found.append(
                    f"the fine-tune {c.name} scores below the zero-shot reading on {choice.on} "
                    f"({c.right} against {floor} of {c.n})"
                )
    for label, names in mapping.items():
        if isinstance(names, str) or not names:
            found.append(
                f"class {label} maps onto no ImageNet class: no zero-shot reading, and the guard knows "
                "it only from its training photos"
            )
        elif len(names) > MAX_MAPPED:
            found.append(
                f"class {label} maps onto {len(names)} ImageNet classes (more than {MAX_MAPPED}): its "
                "zero-shot reading and its guard are guesses"
            )
    if threshold > MAX_THRESHOLD:
        found.append(f"the guard's threshold is {threshold:.4f} (above {MAX_THRESHOLD}): it flags almost nothing")
    if valid_flagged is not None and valid_flagged > MAX_VALID_FLAGGED:
        found.append(f"the guard flags {valid_flagged:.1%} of validation (more than {MAX_VALID_FLAGGED:.0%})")
    return found


def table(choice: Choice) -> str:
    """The candidates as a markdown table, the chosen one in bold."""
    with_folders = any(c.out_of_domain for c in choice.candidates)
    lines = [
        f"| candidate | passes | right on {choice.on} | in-domain flagged | "
        + ("not-in-domain flagged, worst folder | " if with_folders else "")
        + "validation | guard |",
        "|---|---|---|---|" + ("---|" if with_folders else "") + "---|---|",
    ]
    for c in choice.candidates:
        name = f"**{c.name}** (chosen)" if c is choice.chosen else c.name
        worst = c.worst_out_of_domain
        folder = f"{worst[1]:.1%} (`{worst[0]}`) | " if worst else "– | "
        lines.append(
            f"| {name} | {c.passes} | {c.right}/{c.n} ({c.accuracy:.1%}) | {c.flagged}/{c.n} ({c.flagged_rate:.1%}) | "
            + (folder if with_folders else "")
            + f"{c.valid_right}/{c.valid_n} | {c.guard}, threshold {c.threshold:.4f} |"
        )
    return "\n".join(lines)

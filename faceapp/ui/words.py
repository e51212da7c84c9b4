"""What the engine knows, in the words a person reads on the pages.

The engine speaks of cosines, decision scores, FPIR and pack names; a person chooses
how many strangers may be named, picks a model by what it is for, and reads why a
face got no name. The engineer's figures stay available in tooltips and in the
"Show details" views.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from ..core.identify import (ALREADY_IN_PHOTO, AMBIGUOUS, BELOW, MATCH, NO_GALLERY, POOR_QUALITY,
                             TRACK_VOTE)
from ..core.operating import NAMED_POINTS, one_in, rate_words

# -- face models ---------------------------------------------------------------------------

# What each shipped embedder is for; an unknown pack is shown by its own name.
MODEL_ROLES = {
    "dlib-taper-150-v1": ("Standard", "recommended: accurate and quick"),
    "dlib-resnet-v1": ("Accurate", "the reference model, about half as fast"),
    "dlib-taper-104-v1": ("Fast", "for slow computers and small galleries"),
    "mobilefacenet-64-v1": ("Experimental", "very fast, misses many people"),
}


def model_title(pack_name: str, variant: str | None = None, default_variant: str | None = None
                ) -> str:
    """"Standard", "Accurate (full precision)", ... for a pack and variant."""
    role = MODEL_ROLES.get(pack_name)
    title = role[0] if role else pack_name  # a pack someone added: its own name
    if variant and default_variant and variant.split("+")[0] != default_variant:
        title += " (full precision)" if variant.startswith("fp32") else f" ({variant})"
    return title


def model_text(pack_name: str, variant: str | None = None,
               default_variant: str | None = None) -> str:
    """A combo box item: "Standard: recommended: accurate and quick"."""
    role = MODEL_ROLES.get(pack_name)
    title = model_title(pack_name, variant, default_variant)
    return f"{title} – {role[1]}" if role else title


def model_details(pack) -> str:
    """The engineer's line for a model pack (tooltips, details views)."""
    parts = [pack.name]
    lfw = pack.manifest.get("evaluation", {}).get("lfw", {})
    variant = pack.manifest.get("default_variant")
    accuracy = lfw.get(variant, {}).get("accuracy_mean") if variant else None
    if variant:
        parts[0] += f" ({variant})"
    if accuracy:
        parts.append(f"LFW pair accuracy {accuracy:.2%}")
    if pack.manifest.get("licence"):
        parts.append(f"licence {pack.manifest['licence']}")
    return " · ".join(parts)


# -- the operating point --------------------------------------------------------------------

LEVEL_WORDS = {
    "strict": "Strict",
    "balanced": "Balanced",
    "lenient": "Lenient",
}


def level_text(level: str) -> str:
    """A combo box item: "About 1 in 1,000 strangers (strict)"."""
    if level == "custom":
        return "Another rate…"
    return f"{rate_words(NAMED_POINTS[level]).capitalize()} strangers ({level})"


def share_words(share: float) -> str:
    """0.08 -> "about 8 in 100"; 0.004 -> "fewer than 1 in 100"."""
    if share < 0.005:
        return "fewer than 1 in 100"
    return f"about {round(share * 100)} in 100"


def point_meaning(rule, one_in_chosen: int | None = None) -> str:
    """What the chosen point means for this gallery, in a sentence or two."""
    people = f"{rule.people:,} {'person' if rule.people == 1 else 'people'}"
    strangers = (f"{rate_words(rule.fpir)} strangers (people not enrolled) would be "
                 "named as someone" if rule.fpir is not None else
                 "how many strangers get a name is not known for this model")
    if rule.miss is not None:
        missed = (f"an enrolled person goes unnamed {share_words(rule.miss)} times they "
                  "are seen")
    else:
        missed = "enrolled people go unnamed more often than usual"
    text = f"With {people} enrolled: {strangers}; {missed}."
    if rule.population_shift:
        text += (" The people in this gallery look more alike than usual, so the app is "
                 "stricter with them.")
    text += " Stricter means fewer strangers named, but more enrolled people missed."
    return text


def point_details(rule) -> str:
    """The engineer's line (details view): the threshold in effect."""
    score = f"decision score ≥ {rule.threshold:.3f}"
    if rule.runner_up_weight:
        score += f" (best − {rule.runner_up_weight:.2f} × second best)"
    shift = f", raised {rule.population_shift:.3f} for this population" \
        if rule.population_shift else ""
    fpir = f"FPIR {rule.fpir:.4f}" if rule.fpir is not None else "FPIR unknown"
    miss = f", miss rate {rule.miss:.1%}" if rule.miss is not None else ""
    return (f"Threshold in effect: {score}{shift}; {fpir}{miss} for {rule.people} people, "
            f"{rule.samples_per_person:.1f} samples each (measured on LFW 1:N).")


# -- why a face got no name -------------------------------------------------------------------

def why_text(reason: str, nearest: str | None = None, runner_up: str | None = None) -> str:
    """Why a face got the answer it got, in plain words (no scores)."""
    if reason in (MATCH, "", None):
        return ""
    if reason == TRACK_VOTE:
        return "named from the same face a moment before"
    if reason == POOR_QUALITY:
        return "too unclear to tell who it is"
    if reason == NO_GALLERY:
        return "nobody is enrolled yet"
    if reason == AMBIGUOUS and nearest and runner_up:
        return f"could be {nearest} or {runner_up}: too alike to tell"
    if reason == AMBIGUOUS:
        return "too like several people to tell"
    if reason == BELOW and nearest:
        return f"not close enough to anyone (nearest: {nearest})"
    if reason == BELOW:
        return "not close enough to anyone enrolled"
    if reason == ALREADY_IN_PHOTO and nearest:
        return f"looks like {nearest}, who is already named in this photo"
    if reason == ALREADY_IN_PHOTO:
        return "looks like someone already named in this photo"
    return reason


# -- where a face was seen ------------------------------------------------------------------

def short_source(source: str) -> str:
    """"/long/path/door.mp4 #1234 00:01:02.345" -> "door.mp4 at 1:02";
    "/photos/a/b.jpg" -> "b.jpg"; a camera's label stays as it is."""
    from ..core.sources import Frame

    if not source:
        return ""
    path, frame = Frame.parse_where(source)
    name = Path(path).name or path
    if frame is None:
        return name
    clock = source.rsplit(" ", 1)[-1]
    try:
        hours, minutes, seconds = clock.split(":")
        total = int(hours) * 3600 + int(minutes) * 60 + int(float(seconds))
    except ValueError:
        return name
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{name} at {h}:{m:02d}:{s:02d}" if h else f"{name} at {m}:{s:02d}"


def when_text(when: datetime) -> str:
    """A local date and time a person reads: "2024-05-02 14:03"."""
    return f"{when.astimezone():%Y-%m-%d %H:%M}"


__all__ = ["model_title", "model_text", "model_details", "level_text", "point_meaning",
           "point_details", "why_text", "short_source", "when_text", "one_in"]

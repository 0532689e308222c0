"""Writing a privacy audit: ``report.json`` (every figure), ``report.md`` and ``sheet.png``.

The JSON is for tracking a profile over time (with every photo's fidelity figures, so that a
change can be traced to the photos it moved); the Markdown puts privacy (rank-1 of both
attackers on every protocol) and fidelity side by side, the mouth's figures against the noise
floor (when the run has ``jpeg75``) and the labelled closed mouths (when labels were given); the
contact sheet shows what the numbers mean, because a rate alone does not show that a blurred
face is useless to a clinician.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from gateway.audit.fidelity import Fidelity
from gateway.audit.judge import JudgedFidelity
from gateway.audit.lineup import Score
from gateway.audit.mouths import CLOSED_BELOW, OPEN_ABOVE, MouthStates, closed_mouth_states
from gateway.audit.privacy import PROTOCOLS, SHEET_PHOTO, STRENGTHS, VIEWS, AuditResult, TransformResult
from gateway.audit.thresholds import (
    NOISE_FLOOR,
    NOISE_FLOOR_PERCENTILE,
    THRESHOLDED,
    Verdict,
    noise_thresholds,
    verdicts,
)
from gateway.errors import AuditError

FIDELITY_FIELDS = tuple(Fidelity.__dataclass_fields__)
JUDGED_FIELDS = tuple(JudgedFidelity.__dataclass_fields__)
STRENGTH_TITLES = {
    "strong": "strong (original landmarks)",
    "detector": "detector-based",
    **{s: f"geometry: {s.partition(':')[2]}" for s in STRENGTHS if s.startswith("geometry:")},
}
VIEW_TITLES = {"lineup": "line-up", "closed": "closed set"}


def _score_json(value: Score) -> dict[str, Any]:
    low, high = value.interval
    return {
        "hits": value.hits,
        "trials": value.trials,
        "draws": value.draws,
        "rate": value.rate,
        "ci95": [low, high],
        "chance": value.chance,
    }


def _fidelity_json(result: TransformResult) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "compared": result.fidelity_compared,
        "redetected": len(result.fidelity),
        "redetection_rate": len(result.fidelity) / result.fidelity_compared if result.fidelity_compared else None,
    }
    for name in FIDELITY_FIELDS:
        summary[name] = _summary([getattr(f, name) for f in result.fidelity.values()])
    return summary


def _per_photo_json(result: TransformResult) -> dict[str, dict[str, float]]:
    return {
        key: {**asdict(fidelity), "mouth_aperture": result.mouth_apertures[key]}
        for key, fidelity in sorted(result.fidelity.items())
    }


def thresholds_of(result: AuditResult) -> dict[str, float]:
    """The mouth's thresholds from the run's ``jpeg75`` transform; empty when it has none."""
    floor = next((t for t in result.transforms if t.name == NOISE_FLOOR), None)
    return {} if floor is None else noise_thresholds(list(floor.fidelity.values()))


def _verdicts(result: TransformResult, thresholds: dict[str, float]) -> dict[str, Verdict]:
    return verdicts(list(result.fidelity.values()), thresholds)


def _closed_mouths(run: AuditResult, result: TransformResult) -> MouthStates:
    released = [t.probe for t in run.trials["a"] if t.probe not in result.failed]  # protocol a: every kept photo
    return closed_mouth_states(run.closed_mouths, released, result.mouth_apertures)


def _verdict_json(verdict: Verdict) -> dict[str, Any]:
    return {**asdict(verdict), "passed": verdict.passed}


def _judged_json(result: TransformResult) -> dict[str, Any]:
    summary: dict[str, Any] = {"judged": len(result.judged)}
    for name in JUDGED_FIELDS:
        summary[name] = _summary([getattr(f, name) for f in result.judged])
    return summary


def _summary(values: list[float]) -> dict[str, float] | None:
    return {"mean": float(np.mean(values)), "median": float(np.median(values))} if values else None


def report_json(result: AuditResult) -> dict[str, Any]:
    """Every figure of the run, the seed and the line-up draws, as a JSON-ready dict."""
    thresholds = thresholds_of(result)
    return {
        "faces": str(result.faces),
        "seed": result.seed,
        "lineup_size": result.lineup_size,
        "lineups_per_probe": result.draws,
        "people": len(result.identities),
        "photos": len(result.trials["a"]),
        "excluded_photos": result.excluded,
        "protocols": PROTOCOLS,
        "elapsed_s": round(result.elapsed_s, 1),
        "noise_floor": (
            {"transform": NOISE_FLOOR, "percentile": NOISE_FLOOR_PERCENTILE, "thresholds": thresholds}
            if thresholds
            else None
        ),
        "closed_mouths_labelled": sorted(result.closed_mouths),
        "transforms": [
            {
                "name": t.name,
                "settings": t.settings,
                "released": t.released,
                "failed_closed": dict(t.failures),
                "failed_photos": t.failed,
                "detector_found": t.detector_found,
                "scores": {
                    strength: {
                        protocol: {view: _score_json(t.scores[strength][protocol][view]) for view in VIEWS}
                        for protocol in PROTOCOLS
                    }
                    for strength in STRENGTHS
                },
                "fidelity": _fidelity_json(t),
                "verdicts": {name: _verdict_json(v) for name, v in _verdicts(t, thresholds).items()},
                "closed_mouths": asdict(_closed_mouths(result, t)) if result.closed_mouths else None,
                "judge": _judged_json(t),
                "per_photo": _per_photo_json(t),
            }
            for t in result.transforms
        ],
        # The closed-set gallery is every person's photo #1 (in (a) the probe's own photo for its
        # person); a draw lists each line-up's photos in the order drawn. Protocol c uses b's draws.
        "photo_1": result.trials["b"][0].gallery,
        "draws": {
            protocol: [
                {
                    "probe": trial.probe,
                    "lineups": [[trial.gallery[member] for member in lineup] for lineup in trial.lineups],
                }
                for trial in result.trials[protocol]
            ]
            for protocol in ("a", "b")
        },
    }


def _percent(value: float) -> str:
    return f"{100 * value:.0f}%"


def _cell(value: Score) -> str:
    low, high = value.interval
    shown = f"{value.trials // value.draws}×{value.draws}" if value.draws > 1 else f"{value.trials}"
    return f"{_percent(value.rate)} [{_percent(low)}–{_percent(high)}] n={shown}"


def report_markdown(result: AuditResult) -> str:
    """The privacy table (transform x protocol, both attackers) and the fidelity table."""
    people = len(result.identities)
    photos = len(result.trials["a"])
    columns = [(p, v) for v in VIEWS for p in PROTOCOLS]
    lines = [
        "# Privacy audit",
        "",
        f"{people} people, {photos} photos ({len(result.excluded)} excluded: no face on the original), "
        f"seed {result.seed}, line-ups of {result.lineup_size}"
        + (f", {result.draws} line-ups per probe" if result.draws > 1 else "")
        + f", {result.elapsed_s:.0f} s.",
        "",
        "Protocols: " + "; ".join(f"({p}) {d}" for p, d in PROTOCOLS.items()) + ". "
        "A line-up holds the person and others drawn with the seed; a closed set holds every person, "
        "each by photo #1 (in (a) the probe's person by photo i).",
        f"Chance: line-up 1/{result.lineup_size} = {_percent(1 / result.lineup_size)}, "
        f"closed set 1/{people} = {_percent(1 / people)}. "
        "Cells: rank-1 rate [95% Wilson interval, over probes] n=probes (× line-ups per probe). "
        "Probes that failed closed are not released and not counted; see the released column.",
        "Geometry attackers: Face Mesh landmarks of the region found on the released photo, turned level,",
        "centred and scaled (a similarity transform), nearest neighbour among the candidates' same region;",
        "a photo on which Face Mesh finds no face cannot be matched (see the face found column).",
        "",
        "## Re-identification (rank-1)",
        "",
        "| transform | attacker | released | face found | "
        + " | ".join(f"({p}) {VIEW_TITLES[v]}" for p, v in columns)
        + " |",
        "|---|---|---|---|" + "---|" * len(columns),
    ]
    for t in result.transforms:
        failed = sum(t.failures.values())
        released = f"{t.released}/{t.released + failed}"
        if failed:
            released += " (" + ", ".join(f"{n} {reason}" for reason, n in sorted(t.failures.items())) + ")"
        # The strong attacker is given the face of every released photo; the others must find it.
        for strength in STRENGTHS:
            cells = [_cell(t.scores[strength][p][v]) for p, v in columns]
            lines.append(
                f"| {t.name} | {STRENGTH_TITLES[strength]} | {released} | {t.found[strength]} | "
                + " | ".join(cells)
                + " |"
            )
    lines += [
        "",
        "## Fidelity (landmarks re-detected on the released image vs the original)",
        "",
        "Errors in inter-ocular distances (iris centre to iris centre; 0.0120 is 1.2%),",
        "aperture = eyelid height / width, gaze = iris centre relative to the eye corners in eye widths,",
        "mouth aperture = inner-lip gap / mouth width, corner asymmetry = right minus left mouth corner",
        "height in inter-ocular distances; mean (median) over re-detected photos.",
        "Where a transform hides the eyes (blur, pixelate, eyebar) the landmarker only guesses them.",
        "",
        "| transform | re-detected | eyelid error | iris error | aperture diff | gaze diff "
        "| mouth aperture diff | corner asymmetry diff |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in result.transforms:
        summary = _fidelity_json(t)
        redetected = f"{summary['redetected']}/{summary['compared']}"
        cells = [_mean_median(summary[name]) for name in FIDELITY_FIELDS]
        lines.append(f"| {t.name} | {redetected} | " + " | ".join(cells) + " |")
    lines += _thresholds_markdown(result) + _closed_mouths_markdown(result)
    lines += [
        "",
        "## Independent judge (dlib 68-point model on the original's face box)",
        "",
        "Eye points 36-47 against those on the original, in inter-ocular distances (eye centre to",
        "eye centre); aperture = mean lid height / width. A change that improves Face Mesh's figures",
        "above but worsens these has been fitted to Face Mesh, not to the eye.",
        "",
        "| transform | judged | eye error | aperture diff |",
        "|---|---|---|---|",
    ]
    for t in result.transforms:
        judged = _judged_json(t)
        cells = [_mean_median(judged[name]) for name in JUDGED_FIELDS]
        lines.append(f"| {t.name} | {judged['judged']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _thresholds_markdown(result: AuditResult) -> list[str]:
    lines = ["", "## The mouth against the noise floor", ""]
    thresholds = thresholds_of(result)
    if not thresholds:
        return lines + [f"No thresholds: the run has no `{NOISE_FLOOR}` transform to measure the noise floor with."]
    lines += [
        f"Threshold: the {NOISE_FLOOR_PERCENTILE:.0f}th percentile of the per-photo differences of `{NOISE_FLOOR}` "
        "(the original re-encoded as JPEG, quality 75: Face Mesh's noise).",
        "A transform passes when its mean difference is at or below it; within: its photos at or below it.",
        "",
        "| transform | " + " | ".join(name.replace("_", " ") for name in THRESHOLDED) + " |",
        "|---|" + "---|" * len(THRESHOLDED),
    ]
    for t in result.transforms:
        found = _verdicts(t, thresholds)
        cells = [
            "–" if name not in found else
            f"{'pass' if found[name].passed else 'FAIL'}: {found[name].mean:.4f} vs {found[name].threshold:.4f} "
            f"(within {_percent(found[name].within)})"
            for name in THRESHOLDED
        ]
        lines.append(f"| {t.name} | " + " | ".join(cells) + " |")
    return lines


def _closed_mouths_markdown(result: AuditResult) -> list[str]:
    if not result.closed_mouths:
        return []
    lines = [
        "",
        "## Closed mouths (labelled photos)",
        "",
        f"{len(result.closed_mouths)} photos labelled closed; Face Mesh's reading of the release: closed under "
        f"{CLOSED_BELOW}, open over {OPEN_ABOVE} (inner-lip gap over mouth width), parted between.",
        "",
        "| transform | released | re-detected | closed | parted | open |",
        "|---|---|---|---|---|---|",
    ]
    for t in result.transforms:
        states = _closed_mouths(result, t)
        classes = [str(states.classes[name]) for name in ("closed", "parted", "open")]
        lines.append(f"| {t.name} | {states.labelled} | {states.redetected} | " + " | ".join(classes) + " |")
    return lines


def _mean_median(summary: dict[str, float] | None) -> str:
    return "–" if summary is None else f"{summary['mean']:.4f} ({summary['median']:.4f})"


def _label(canvas: np.ndarray, text: str, x: int, y: int) -> None:
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)


def contact_sheet(result: AuditResult) -> np.ndarray:
    """One row per person (photo #1), columns: the original, then each transform (RGB)."""
    titles = ["original", *(t.name for t in result.transforms)]
    pad, header = 6, 24
    cell = SHEET_PHOTO + pad
    canvas = np.full((header + cell * max(len(result.sheet), 1), pad + cell * len(titles), 3), 255, np.uint8)
    for column, title in enumerate(titles):
        _label(canvas, title[:22], pad + column * cell, header - 8)
    for row, sheet_row in enumerate(result.sheet):
        y = header + row * cell
        for column, image in enumerate(sheet_row.images):
            x = pad + column * cell
            if image is None:
                canvas[y : y + SHEET_PHOTO, x : x + SHEET_PHOTO] = 200
                _label(canvas, "failed closed", x + 8, y + SHEET_PHOTO // 2)
                continue
            height, width = image.shape[:2]
            canvas[y : y + height, x : x + width] = image
    return canvas


def write_report(result: AuditResult, folder: Path) -> list[Path]:
    """Write ``report.json``, ``report.md`` and ``sheet.png`` into ``folder`` (created if needed).

    Raises
    ------
    AuditError
        A file cannot be written (the folder is not writable, the disk is full).
    """
    paths = [folder / "report.json", folder / "report.md", folder / "sheet.png"]
    try:
        folder.mkdir(parents=True, exist_ok=True)
        paths[0].write_text(json.dumps(report_json(result), indent=2) + "\n", encoding="utf-8")
        paths[1].write_text(report_markdown(result), encoding="utf-8")
    except OSError as exc:
        raise AuditError(f"cannot write the report in {folder} ({exc.strerror})") from None
    if not cv2.imwrite(str(paths[2]), cv2.cvtColor(contact_sheet(result), cv2.COLOR_RGB2BGR)):
        raise AuditError(f"cannot write {paths[2]}")
    return paths

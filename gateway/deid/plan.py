"""A profile compiled once: the action code of every table attribute under its options and
overrides, ready for one dictionary look-up per element.

Compiling is the expensive part of applying a profile (621 rows, option precedence, overrides),
so it happens once per distinct ``DeidSettings`` in a process, not once per instance.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from pydicom.tag import Tag

from gateway.deid.options import Option
from gateway.deid.settings import DeidSettings
from gateway.deid.table import ConfidentialityTable, load_table

PATIENT_NAME = Tag("PatientName")
PATIENT_ID = Tag("PatientID")


@dataclass(frozen=True)
class ScrubPlan:
    """What one profile does to each attribute.

    Attributes
    ----------
    settings
        The settings it was compiled from.
    table
        The Table E.1-1 edition it applies.
    codes
        Table code (``"X"``, ``"X/Z/D"``, ``"K"`` ...) per tag after options and keep /
        remove / empty overrides. Compound codes are resolved per IOD by the scrubber.
    replacements
        Fixed replacement text per tag (the ``replace`` overrides).
    pseudonymised
        Tags replaced by keyed pseudonyms (PatientName, PatientID) unless overridden.
    private_allow_list
        ``(group, private creator, element byte)`` of the private attributes kept.
    digest
        Short hash of the settings, recorded in DeidentificationMethod so that an output names
        the exact profile that made it.
    """

    settings: DeidSettings
    table: ConfidentialityTable
    codes: dict[int, str]
    replacements: dict[int, str]
    pseudonymised: frozenset[int]
    private_allow_list: frozenset[tuple[int, str, int]]
    digest: str

    @property
    def options(self) -> tuple[Option, ...]:
        """The Annex E options of the profile."""
        return self.settings.options


def option_code(basic: str, option_codes: list[str]) -> str:
    """The code an attribute gets when some chosen options have a cell for it.

    Clean wins over Retain when two chosen options disagree (the safer of the two); either
    wins over the Basic Profile.
    """
    if "C" in option_codes:
        return "C"
    if "K" in option_codes:
        return "K"
    return basic


#: Compiled plans by the JSON of their settings; a process sees a handful of profiles.
_PLANS: dict[str, ScrubPlan] = {}
_MAX_PLANS = 64


def compile_plan(settings: DeidSettings) -> ScrubPlan:
    """Return the compiled plan of ``settings`` (cached per distinct settings)."""
    key = settings.model_dump_json()
    plan = _PLANS.get(key)
    if plan is None:
        if len(_PLANS) >= _MAX_PLANS:
            _PLANS.clear()
        plan = _PLANS[key] = _compile(settings, key)
    return plan


def _compile(settings: DeidSettings, settings_json: str) -> ScrubPlan:
    table = load_table()
    chosen = [option.value for option in settings.options]
    codes = {
        tag: option_code(row.basic, [row.options[o] for o in chosen if o in row.options])
        for tag, row in table.rows.items()
    }
    for tags, code in ((settings.keep, "K"), (settings.remove, "X"), (settings.empty, "Z")):
        codes.update(dict.fromkeys(tags, code))
    overridden = {*settings.keep, *settings.remove, *settings.empty, *settings.replace}
    pseudonymised = (
        frozenset({PATIENT_NAME, PATIENT_ID}) - overridden
        if settings.patient_pseudonyms
        else frozenset()
    )
    return ScrubPlan(
        settings=settings,
        table=table,
        codes=codes,
        replacements=dict(settings.replace),
        pseudonymised=pseudonymised,
        private_allow_list=frozenset(
            (p.group, p.creator.strip(), p.element) for p in settings.private_allow_list
        ),
        digest=hashlib.sha256(settings_json.encode()).hexdigest()[:12],
    )

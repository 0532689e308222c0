"""Generate the package's copy of PS3.15 Table E.1-1 (``table_e1_1.json``).

Run as ``python tools/build_deid_table.py SRC OUT [--edition 2024b]`` where SRC is the
innolitics extraction of the standard's table (``confidentiality_profile_attributes.json``).

The table is data, not code, so that a new edition of the standard is a regenerated file and a
reviewable diff. Two facts the table alone does not give are added from highdicom's copy of the
standard (PS3.3, same extraction project), because the scrubber needs them for every instance
and must not parse 22 MB of JSON per worker:

* the Type (1, 1C, 2, 2C, 3) of every attribute that carries a compound action (X/Z, X/D,
  X/Z/D, Z/D, X/Z/U*) in every IOD, by its position (sequence path), which decides how the
  compound action resolves for the IOD in hand (PS3.15 Table E.1-1a);
* the set of public attributes used by any standard IOD: an attribute outside the table and
  outside this set is "unknown" and removed by default instead of being passed silently.
"""

from __future__ import annotations

import argparse
import json
import re
from importlib import metadata, resources
from pathlib import Path
from typing import Any

from pydicom.datadict import keyword_for_tag, tag_for_keyword

from gateway.deid.options import Option

#: Order of strength of attribute Types: a stronger Type needs a value where a weaker one does not.
TYPE_STRENGTH = {"1": 4, "1C": 3, "2": 2, "2C": 1, "3": 0}
COMPOUND_ACTIONS = {"X/Z", "X/D", "X/Z/D", "Z/D", "X/Z/U*"}
_EXACT_TAG = re.compile(r"\(([0-9A-F]{4}),([0-9A-F]{4})\)")


def build(source_rows: list[dict[str, str]], edition: str) -> dict[str, Any]:
    """Return the table document written to ``table_e1_1.json``.

    Parameters
    ----------
    source_rows
        Rows of the innolitics extraction of Table E.1-1.
    edition
        The DICOM edition the rows come from (e.g. ``"2024b"``).
    """
    attributes = []
    patterns = []
    for row in sorted(source_rows, key=lambda r: r["id"]):
        entry: dict[str, Any] = {
            "name": row["name"].split("\n")[0].strip(),
            "in_standard_iod": row["stdCompIOD"] == "Y",
            "basic": row["basicProfile"],
            "options": {
                option.value: row[option.column] for option in Option if option.column in row
            },
        }
        exact = _EXACT_TAG.fullmatch(row["tag"])
        if exact:
            tag = int(exact[1] + exact[2], 16)
            attributes.append({"tag": f"{tag:08X}", "keyword": keyword_for_tag(tag), **entry})
        else:
            patterns.append({"pattern": row["tag"], **entry})
    compound_keywords = {a["keyword"] for a in attributes if a["basic"] in COMPOUND_ACTIONS}
    iods, sop_class_iods, standard_keywords = _iod_facts(compound_keywords)
    standard_tags = sorted(
        f"{tag:08X}" for tag in (tag_for_keyword(k) for k in standard_keywords) if tag is not None
    )
    return {
        "edition": edition,
        "source": (
            f"DICOM PS3.15 {edition} Table E.1-1, as extracted by the innolitics/dicom-standard "
            "project (MIT licence, Copyright (c) 2017 Innolitics, LLC)"
        ),
        "iod_source": (
            f"PS3.3 IOD and module definitions shipped with highdicom {metadata.version('highdicom')}"
        ),
        "attributes": attributes,
        "patterns": patterns,
        "iod_attribute_types": iods,
        "sop_class_iods": sop_class_iods,
        "standard_attributes": standard_tags,
    }


def _iod_facts(
    compound_keywords: set[str],
) -> tuple[dict[str, dict[str, str]], dict[str, str], set[str]]:
    """Types of the compound-action attributes per IOD, SOP class -> IOD, all standard keywords."""
    standard = resources.files("highdicom") / "_standard"
    modules = json.loads((standard / "module_attribute_map.json").read_text())
    iod_modules = json.loads((standard / "iod_module_map.json").read_text())
    sop_class_iods = json.loads((standard / "sop_class_iod_map.json").read_text())
    standard_keywords = {a["keyword"] for attrs in modules.values() for a in attrs}
    standard_keywords.update(p for attrs in modules.values() for a in attrs for p in a["path"])
    iods: dict[str, dict[str, str]] = {}
    for iod, module_refs in sorted(iod_modules.items()):
        types: dict[str, str] = {}
        for ref in module_refs:
            for attribute in modules.get(ref["key"], []):
                if attribute["keyword"] not in compound_keywords:
                    continue
                position = "/".join([*attribute["path"], attribute["keyword"]])
                known = types.get(position)
                if known is None or TYPE_STRENGTH[attribute["type"]] > TYPE_STRENGTH[known]:
                    types[position] = attribute["type"]
        # Type 3 is what a missing position means, so only the stronger Types are stored.
        iods[iod] = {k: v for k, v in sorted(types.items()) if v != "3"}
    return iods, dict(sorted(sop_class_iods.items())), standard_keywords


def main(argv: list[str] | None = None) -> None:
    """Command line entry point: read SRC, write OUT."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, help="innolitics confidentiality_profile_attributes.json")
    parser.add_argument("out", type=Path, help="where to write table_e1_1.json")
    parser.add_argument("--edition", default="2024b", help="DICOM edition of SOURCE")
    args = parser.parse_args(argv)
    document = build(json.loads(args.source.read_text()), args.edition)
    args.out.write_text(to_text(document))


def to_text(document: dict[str, Any]) -> str:
    """Serialise with one table row / IOD per line: compact, yet a new edition diffs by row."""
    lines = ["{"]
    for index, (key, value) in enumerate(document.items()):
        comma = "," if index < len(document) - 1 else ""
        if isinstance(value, list) and value and isinstance(value[0], dict):
            rows = ",\n".join("  " + json.dumps(row) for row in value)
            lines.append(f"{json.dumps(key)}: [\n{rows}\n]{comma}")
        elif isinstance(value, dict) and value and isinstance(next(iter(value.values())), dict):
            rows = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in value.items())
            lines.append(f"{json.dumps(key)}: {{\n{rows}\n}}{comma}")
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value)}{comma}")
    lines.append("}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()

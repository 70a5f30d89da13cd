"""Pre-registration as a record: the study file's content as each sweep found it, and what changed after runs ended.

The first sweep of a study stores the study file's text and digest in the manifest (results/<study>/study.json,
`registrations`) with the number of the study's runs that had finished then (0 before any); a later sweep that
finds the file changed adds an entry. `changes` reads the entries in order and says what a reader must know: a
variant, seed, margin, split or comparison that entered the study after some of its runs had finished, and how
many had. Torch-free: the runner writes it, the report reads it. `from_git` rebuilds the entries of a study that
ran before this record existed from the study file's commits (their times against the records' finish times).
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

FINAL = ("completed", "failed")  # a run with one of these statuses has ended
WATCHED = ("variants", "seeds", "equivalence_margin", "overrides", "base_config", "controls", "aa",
           "seeds_on_demand")  # the study file's keys whose change after runs ended a report names


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def entry(text: str, at: str, finished: int, source: str = "sweep") -> dict[str, Any]:
    """One registration: the study file's text and sha256, when it was recorded, how many runs had ended."""
    return {"digest": digest(text), "text": text, "at": at, "finished": int(finished), "source": source}


def register(previous: Sequence[dict[str, Any]] | None, text: str, at: str, finished: int) -> list[dict[str, Any]]:
    """The registrations with the study file as a sweep now finds it: appended when its text changed."""
    out = [dict(e) for e in previous or ()]
    if not out or out[-1]["digest"] != digest(text):
        out.append(entry(text, at, finished))
    return out


def finished_runs(study_dir: Path) -> int:
    """The study's runs whose record says they ended (completed or failed)."""
    count = 0
    for path in Path(study_dir).glob("runs/*/record.json"):
        try:
            count += json.loads(path.read_text()).get("status") in FINAL
        except (OSError, json.JSONDecodeError, AttributeError):
            continue
    return count


@dataclass(frozen=True)
class Change:
    """What entered or left the study file between two registrations, recorded after `finished` runs had ended."""

    at: str
    finished: int
    what: str  # e.g. "variant FCN-CAP-DR added"
    variants: tuple[str, ...] = ()  # the variants this change brought in


def _parse(text: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _diff(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, tuple[str, ...]]]:
    out: list[tuple[str, tuple[str, ...]]] = []
    before, after = old.get("variants") or {}, new.get("variants") or {}
    added = [v for v in after if v not in before]
    out += [(f"variant {v} added", (v,)) for v in added]
    out += [(f"variant {v} removed", ()) for v in before if v not in after]
    out += [(f"variant {v} changed", (v,)) for v in after if v in before and before[v] != after[v]]
    seeds_before, seeds_after = old.get("seeds") or [], new.get("seeds") or []
    more = [s for s in seeds_after if s not in seeds_before]
    if more:
        out.append((f"{len(more)} seed{'s' if len(more) > 1 else ''} added ({_span(more)})", ()))
    if [s for s in seeds_before if s not in seeds_after]:
        out.append(("seeds removed", ()))
    for key in WATCHED[2:]:
        if old.get(key) != new.get(key):
            label = {"equivalence_margin": "smallest difference of interest (equivalence_margin)",
                     "overrides": "shared overrides (splits and recipe)"}.get(key, key)
            value = new.get(key)
            shown = "removed" if value is None else f"set to {value}" if key == "equivalence_margin" else "changed"
            out.append((f"{label} {shown}", ()))
    return out


def _span(seeds: Sequence[int]) -> str:
    s = sorted(seeds)
    return f"{s[0]}-{s[-1]}" if len(s) > 2 and s[-1] - s[0] == len(s) - 1 else ", ".join(map(str, s))


def changes(registrations: Sequence[dict[str, Any]] | None) -> list[Change]:
    """Each change of a watched key between consecutive registrations recorded after some run had ended."""
    regs = list(registrations or ())
    out = []
    for old, new in zip(regs, regs[1:], strict=False):
        if new["finished"] == 0:
            continue
        for what, variants in _diff(_parse(old["text"]), _parse(new["text"])):
            out.append(Change(at=new["at"], finished=new["finished"], what=what, variants=variants))
    return out


def added_after(registrations: Sequence[dict[str, Any]] | None) -> dict[str, int]:
    """{variant: runs ended when it entered the study file} for every variant that entered after a run ended
    (also when the first registration itself came after runs had ended)."""
    regs = list(registrations or ())
    out: dict[str, int] = {}
    if regs and regs[0]["finished"] > 0:
        out.update({v: regs[0]["finished"] for v in _parse(regs[0]["text"]).get("variants") or {}})
    for change in changes(regs):
        for v in change.variants:
            out.setdefault(v, change.finished)
    return out


def from_git(study_file: Path, finished_at: Iterable[str], repo: Path | None = None) -> list[dict[str, Any]]:
    """Registrations rebuilt from the study file's commits, oldest first: each commit's text, its commit time, and
    how many of the records' finish times (ISO 8601 with offset) precede it. For studies that ran before sweeps
    recorded registrations; the entries say so (`source: git`)."""
    repo = repo or Path(study_file).resolve().parent
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=repo, capture_output=True, text=True,
                         check=True).stdout.strip()
    rel = Path(study_file).resolve().relative_to(top).as_posix()
    log = subprocess.run(["git", "log", "--reverse", "--format=%H %cI", "--", rel], cwd=top, capture_output=True,
                         text=True, check=True).stdout.split("\n")
    ends = sorted(datetime.fromisoformat(t) for t in finished_at)
    out: list[dict[str, Any]] = []
    for line in filter(None, log):
        sha, at = line.split()
        text = subprocess.run(["git", "show", f"{sha}:{rel}"], cwd=top, capture_output=True, text=True,
                              check=True).stdout
        done = sum(t <= datetime.fromisoformat(at) for t in ends)
        if not out or out[-1]["digest"] != digest(text):
            out.append(entry(text, at, done, source="git"))
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m study.registration STUDY_DIR [--study-file F]`: give a study folder that ran before sweeps
    recorded registrations the ones its study file's commits show (the manifest's study file by default), and the
    smallest difference of interest its latest version declares (as a sweep would write it)."""
    import argparse
    import dataclasses
    import sys

    from study.manifest import ManifestError, read_manifest, write_manifest

    p = argparse.ArgumentParser(prog="python -m study.registration", description=main.__doc__)
    p.add_argument("study_dir")
    p.add_argument("--study-file")
    args = p.parse_args(argv)
    try:
        manifest = read_manifest(args.study_dir)
    except ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    study_file = args.study_file or (manifest.study_file if manifest else "")
    if manifest is None or not study_file or not Path(study_file).is_file():
        print(f"error: {args.study_dir}: no study manifest, or its study file {study_file!r} is not here",
              file=sys.stderr)
        return 2
    ends = []
    for path in sorted(Path(args.study_dir).glob("runs/*/record.json")):
        record = json.loads(path.read_text())
        if record.get("status") in FINAL and record.get("finished_at"):
            ends.append(record["finished_at"])
    try:
        regs = from_git(Path(study_file), ends)
    except subprocess.CalledProcessError as e:
        print(f"error: {study_file}: git could not read its history ({e.stderr.strip() or e})", file=sys.stderr)
        return 2
    margin = _parse(regs[-1]["text"]).get("equivalence_margin") if regs else manifest.equivalence_margin
    write_manifest(args.study_dir, dataclasses.replace(manifest, registrations=regs, equivalence_margin=margin))
    print(f"{args.study_dir}: {len(regs)} registration(s) from {study_file}; late: {added_after(regs) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

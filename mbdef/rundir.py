"""The state of one job's directory: finished, resumable, or holding another config's run.

`COMPLETE.json` is written last and atomically, after results.json, and records the hash of the config
that produced it. A re-run of the same config returns the saved results; a different config (or
`force=true`) moves the old artifacts to `superseded/<time>/` first, so nothing computed is lost and no
old file can be mistaken for the new run's.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

import yaml
from omegaconf import OmegaConf

from mbdef.io import cache_key, write_json_atomic
from mbdef.keys import defining, without_non_defining
from mbdef.results import RunResults

# Files Hydra owns in a job dir (its config copy and log): never moved.
HYDRA_OWNED = (".hydra",)
log = logging.getLogger("mbdef")


def config_hash(resolved: dict) -> str:
    return cache_key(config=without_non_defining(resolved))


def changed_keys(old: dict, new: dict) -> list[str]:
    """Config keys whose value differs between two resolved configs (a key only one has counts), ignoring the
    keys that do not enter the hash: why a finished job is re-run."""
    a, b = defining(old), defining(new)
    return sorted(k for k in set(a) | set(b) if a.get(k, "<absent>") != b.get(k, "<absent>"))


class RunDir:
    def __init__(self, path: Path, config_hash: str, resolved: dict | None = None):
        self.path, self.hash, self.resolved = Path(path), config_hash, resolved

    @classmethod
    def prepare(cls, output_dir: str, resolved: dict) -> "RunDir":
        """The job's dir for a resolved (and redacted) config, checked writable before anything is computed."""
        path = Path(output_dir).resolve()
        try:
            path.mkdir(parents=True, exist_ok=True)
            probe = path / f".write-test-{os.getpid()}"
            probe.write_text("")
            probe.unlink()
        except OSError as e:
            raise ValueError(f"paths.output_dir: cannot write to {path} ({e.strerror}); choose a writable "
                             f"directory, e.g. paths.log_dir=/tmp/mbdef") from None
        return cls(path, config_hash(resolved), resolved)

    def finished(self, force: bool = False) -> dict | None:
        """The saved results of a finished run of this config (not with `force`); otherwise None, saying so when
        the dir holds a finished run of another config (its files move to superseded/ when the job begins)."""
        if not force and (done := self.completed_results()) is not None:
            log.info("already complete, skipped (force=true redoes it): %s", self.path / "results.json")
            return done
        if self.resolved is not None and (changed := self.finished_with_other_config(self.resolved)) is not None:
            shown = ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else "")
            log.info("%s holds a finished run of another config (changed: %s): re-running; its files move to "
                     "superseded/", self.path, shown or "mbdef's config hashing")
        return None

    @property
    def marker(self) -> Path:
        return self.path / "COMPLETE.json"

    def completed_results(self) -> dict | None:
        """The saved results when this dir holds a finished run of this very config."""
        if not self.marker.is_file():
            return None
        mark = json.loads(self.marker.read_text())
        results = self.path / "results.json"
        if mark.get("config_hash") != self.hash or not results.is_file():
            return None
        return RunResults.check(json.loads(results.read_text()), str(results))

    def finished_with_other_config(self, resolved: dict) -> list[str] | None:
        """The keys that changed, when this dir holds a finished run of another config; else None."""
        saved = self.path / "resolved_config.yaml"
        if not self.marker.is_file() or not saved.is_file():
            return None
        if json.loads(self.marker.read_text()).get("config_hash") == self.hash:
            return None
        return changed_keys(yaml.safe_load(saved.read_text()) or {}, resolved)

    def start(self, procs, force: bool, write) -> bool:
        """Begin the job, or resume an unfinished run of this config (returns True then): on the main process,
        the resolved config and `write(path)` (what each stage trains on); the others wait for it."""
        resuming = self.resumable(force=force)
        procs.barrier()  # every process has read the dir's state before the main one changes it
        if procs.is_main:
            self.begin(force=force)
            OmegaConf.save(OmegaConf.create(self.resolved), self.path / "resolved_config.yaml")
            write(self.path)
        procs.barrier()
        if resuming:
            log.info("resuming the unfinished job in %s", self.path)
        return resuming

    def resumable(self, force: bool = False) -> bool:
        """True when the dir holds an unfinished run of this config that can be resumed (reads only)."""
        state = self.path / "RUNNING.json"
        previous = json.loads(state.read_text()).get("config_hash") if state.is_file() else None
        return previous == self.hash and not force and not self.marker.is_file()

    def begin(self, force: bool = False) -> bool:
        """Prepare to (re)run; returns True when an unfinished run of this config can be resumed."""
        state = self.path / "RUNNING.json"
        resume = self.resumable(force)
        if not resume:  # a finished, forced, other-config or unknown run: keep its files, but out of the way
            self._supersede()
        write_json_atomic({"config_hash": self.hash, "started": time.strftime("%Y-%m-%d %H:%M:%S")}, state)
        return resume

    def complete(self, results: dict) -> None:
        """results.json, then COMPLETE.json: only now does a re-run skip this job."""
        write_json_atomic(results, self.path / "results.json")
        write_json_atomic({"config_hash": self.hash, "results": "results.json",
                           "finished": time.strftime("%Y-%m-%d %H:%M:%S")}, self.marker)
        (self.path / "RUNNING.json").unlink(missing_ok=True)

    def _supersede(self) -> None:
        old = [p for p in self.path.iterdir() if p.name not in HYDRA_OWNED + ("superseded",) and not p.name.endswith(".log")]
        if not old:
            return
        dest = self.path / "superseded" / time.strftime("%Y%m%d-%H%M%S")
        dest.mkdir(parents=True, exist_ok=True)
        for p in old:
            shutil.move(str(p), dest / p.name)

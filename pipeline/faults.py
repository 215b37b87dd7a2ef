"""Fault injection for the failure tests: inert unless ``$LIVEMOD_FAULTS`` is set.

The variable holds ``;``-separated rules ``STAGE.ACTION=ARG``:

    asr.raise=clip:3        a window of a stream whose id contains "clip" that holds utterance 3
                            raises every time (a poison segment)
    asr.exit=clip:3         the same window kills its worker process every time (os._exit);
                            with $LIVEMOD_FAULTS_STATE set, each death adds a line to
                            <state>/asr.exits
    asr.exit_once=clip:3    kills the worker the first time only (needs $LIVEMOD_FAULTS_STATE,
                            a folder where the rule leaves a marker)
    asr.sleep=0.5           every window takes this much longer (to kill things mid-run)
    prepare.raise=clip:3    the preparer raises when it reaches that utterance (every time)

Stages are ``prepare``, ``asr`` and ``classify``.  Runners pass both variables on to Ray
workers (see ``worker_env``).  Nothing here is reachable from the configuration.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

ENV = "LIVEMOD_FAULTS"
STATE_ENV = "LIVEMOD_FAULTS_STATE"


class InjectedFault(RuntimeError):
    """Raised by a ``raise`` rule."""


def _rules() -> list[tuple[str, str, str]]:
    spec = os.environ.get(ENV, "")
    rules = []
    for part in filter(None, (p.strip() for p in spec.split(";"))):
        key, _, arg = part.partition("=")
        stage, _, action = key.partition(".")
        rules.append((stage.strip(), action.strip(), arg.strip()))
    return rules


def worker_env() -> dict[str, str]:
    """The fault variables to hand to Ray workers (empty when none are set)."""
    return {k: os.environ[k] for k in (ENV, STATE_ENV) if os.environ.get(k)}


def _matches(arg: str, stream_id: str, indices: list[int]) -> bool:
    stream, _, index = arg.rpartition(":")
    return stream in stream_id and int(index) in indices


def inject(stage: str, stream_id: str, indices: list[int]) -> None:
    """Apply the rules of ``stage`` to a unit of work holding utterances ``indices``."""
    if ENV not in os.environ:
        return
    for rule_stage, action, arg in _rules():
        if rule_stage != stage:
            continue
        if action == "sleep":
            time.sleep(float(arg))
        elif not _matches(arg, stream_id, indices):
            continue
        elif action == "raise":
            raise InjectedFault(f"injected fault: {stage} on {arg}")
        elif action == "exit":
            if os.environ.get(STATE_ENV):  # count the deaths, for tests to check
                with open(Path(os.environ[STATE_ENV]) / f"{stage}.exits", "a") as f:
                    f.write(f"{arg}\n")
            os._exit(17)
        elif action == "exit_once":
            marker = Path(os.environ[STATE_ENV]) / f"{stage}.{arg.replace(':', '_')}.done"
            try:
                fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                continue
            os.close(fd)
            os._exit(17)

"""This process's id among the processes that work on a study. Unlike a process id and a host
name, it is unique across machines and containers: the trials a process runs carry it, so its
command can find them should the process be killed, and samplers sharing a study seed from it."""

from __future__ import annotations

import uuid

_worker_id = uuid.uuid4().hex


def worker_id() -> str:
    return _worker_id


def take_worker_id(given: str) -> None:
    """Run as the worker its command started with the id `given`."""
    global _worker_id
    _worker_id = given

"""Why a job stops early: raised by the runner and its training hook, caught by `tasks.run_job`."""

from __future__ import annotations


class JobFailure(Exception):
    """A reason the job cannot run, worded for the lab that submitted it."""


class JobCancelled(Exception):
    """The job's cancel flag was seen; training stops."""


class LeaseLost(Exception):
    """Another runner (or the reaper) took the job over; this run must stop and record nothing."""


class Interrupted(Exception):
    """The process running the job is stopping; the job goes back to the queue."""

"""Measurement scripts, each runnable with ``python -m licbench.tools.<name>``: fuzzing, determinism,
odd images, speed, suite speed, coding time (their figure files through ``figures``)."""

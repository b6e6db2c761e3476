"""The benchmark's resume log: every per-image row, appended as soon as it is measured, so that
rerunning an interrupted ``licbench benchmark`` with the same ``out_dir`` computes only the
rows it lacks.

One JSON object a line, keyed by codec label, rate, image and the codec's model id (a retrained
checkpoint with the same λ is measured again). A line cut short by a kill is dropped on reading.
"""
from __future__ import annotations

import json
from pathlib import Path

from licbench.core.atomic import write_atomic
from licbench.core.codec import Codec

NAME = "per_image.partial.jsonl"


def key(label: str, codec: Codec, image: str) -> tuple:
    return label, str(codec.rate), image, codec.model_id


class RowLog:
    """The rows already measured in ``out_dir``; ``add`` appends one and flushes it."""

    def __init__(self, out_dir: Path):
        self.path = Path(out_dir) / NAME
        self.rows: dict[tuple, dict] = {}
        if self.path.is_file():
            for line in self.path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                    self.rows[tuple(entry["key"])] = entry["row"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue  # the line a kill interrupted
            write_atomic(self.path, "".join(self._line(k, row) for k, row in self.rows.items()))  # drop it for good

    def __len__(self) -> int:
        return len(self.rows)

    def get(self, row_key: tuple) -> dict | None:
        return self.rows.get(row_key)

    def add(self, row_key: tuple, row: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as file:
            file.write(self._line(row_key, row))
        self.rows[row_key] = row

    def remove(self) -> None:
        """Once every row is in the result tables, the log has nothing left to resume."""
        self.path.unlink(missing_ok=True)

    @staticmethod
    def _line(row_key: tuple, row: dict) -> str:
        return json.dumps({"key": list(row_key), "row": row}) + "\n"

"""The end of a ``licbench train -m`` grid: one line per job (done, skipped, failed) from the
jobs' ``result.json`` files, written to ``grid.csv`` in the sweep directory. A grid with a
failed job exits with status 1 after every other job has run."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def grid_results(sweep_dir: Path) -> pd.DataFrame:
    rows = [json.loads(path.read_text()) for path in sorted(Path(sweep_dir).glob("**/result.json"))]
    columns = ["status", "overrides", "ckpt_path", "start", "end", "pid", "error"]
    table = pd.DataFrame(rows).reindex(columns=columns)
    table["overrides"] = table.overrides.map(lambda o: " ".join(o) if isinstance(o, list) else "")
    return table


class GridSummary(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        table = grid_results(sweep_dir)
        table.to_csv(sweep_dir / "grid.csv", index=False)
        counts = table.status.value_counts().to_dict()
        print(f"grid {sweep_dir}: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
        for row in table[table.status == "failed"].itertuples():
            print(f"  failed: {row.overrides}: {row.error}", file=sys.stderr)
        if counts.get("failed"):
            sys.exit(1)

"""Where the benchmarks put their figures: bench/results/<name>.json (gitignored) and stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def save(name: str, data: Any) -> Path:
    """Write ``data`` as bench/results/<name>.json (the folder is made on first use)."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2) + "\n")
    return path


def print_figures(results: dict[str, Any]) -> None:
    """One aligned ``name  value`` line per figure."""
    width = max(len(k) for k in results)
    for k, v in results.items():
        print(f"{k:<{width}}  {v}")

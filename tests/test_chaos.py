"""The short chaos run: workers and schedulers killed, Redis restarted and stalled; nothing lost."""

from __future__ import annotations

from pathlib import Path

import pytest
from chaos import SHORT, run


@pytest.mark.timeout(240)
def test_chaos_run_loses_nothing_starts_nothing_early_and_promotes_nothing_twice(
    tmp_path: Path,
) -> None:
    outcome = run(SHORT, tmp_path)
    print(outcome.table)
    assert outcome.failures == [], "\n".join([outcome.table, *outcome.failures[:20]])

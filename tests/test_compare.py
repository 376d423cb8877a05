"""The paired comparison of two adherence reports: exact McNemar per attribute."""

import pytest

from cinecube.errors import CinecubeError
from cinecube.evaluate.compare import compare_reports, mcnemar_exact


def _report(passes: list[bool]) -> dict:
    return {
        "records": [
            {
                "prompt": f"p{i}",
                "seed": i,
                "canvas": [40, 40, 10],
                "results": {"color": ok, "shape": True, "direction": None, "count": True},
            }
            for i, ok in enumerate(passes)
        ]
    }


def test_exact_mcnemar_matches_the_binomial_tail():
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(0, 6) == pytest.approx(2 / 64)  # all six discordant cases one way
    assert mcnemar_exact(7, 1) == pytest.approx(2 * 9 / 256)
    assert mcnemar_exact(3, 3) == 1.0


def test_a_model_that_loses_many_cases_is_significantly_worse():
    old = _report([True] * 20 + [False] * 20)
    worse = _report([False] * 12 + [True] * 8 + [False] * 20)  # lost 12, gained 0
    result = compare_reports(old, worse)
    color = result["attributes"]["color"]
    assert (color["gained"], color["lost"]) == (0, 12) and color["significantly_worse"]
    assert result["any_significantly_worse"] and not result["attributes"]["shape"]["significantly_worse"]
    assert result["attributes"]["direction"]["scored"] == 0
    same_but_shuffled = _report([False, True] * 20)  # 10 lost, 10 gained: no difference
    assert not compare_reports(old, same_but_shuffled)["any_significantly_worse"]


def test_reports_of_other_cases_are_refused():
    with pytest.raises(CinecubeError, match="same cases"):
        compare_reports(_report([True] * 3), _report([True] * 4))


def test_the_command_prints_the_table_and_exits_1_when_worse(tmp_path, capsys):
    import json

    from cinecube.cli import main

    old, new = tmp_path / "old.json", tmp_path / "new.json"
    old.write_text(json.dumps(_report([True] * 20 + [False] * 20)))
    new.write_text(json.dumps(_report([False] * 12 + [True] * 8 + [False] * 20)))
    assert main(["eval", "compare", str(old), str(new), "--out", str(tmp_path / "c.json")]) == 1
    assert "worse" in capsys.readouterr().out
    assert json.loads((tmp_path / "c.json").read_text())["attributes"]["color"]["lost"] == 12
    assert main(["eval", "compare", str(old), str(old)]) == 0

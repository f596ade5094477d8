"""The README's main job: accuracies measured, printed and asserted."""

from __future__ import annotations

import json

from host.cli import main
from host.demo import run_demo


def test_demo_accuracy_and_bit_exactness():
    report = run_demo()
    print(json.dumps(report.as_dict(), indent=2))
    assert report.float_accuracy > 0.9
    by_mode = {r.mode: r for r in report.results}
    assert set(by_mode) == {"a8w8", "a8w4", "mxint8"}
    assert abs(by_mode["a8w8"].accuracy - report.float_accuracy) <= 0.01
    assert abs(by_mode["a8w4"].accuracy - report.float_accuracy) <= 0.03
    assert abs(by_mode["mxint8"].accuracy - report.float_accuracy) <= 0.03
    assert all(r.mismatches == 0 for r in report.results)


def test_cli_demo_json(capsys):
    assert main(["demo", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["test_samples"] == 540
    assert [m["mode"] for m in payload["modes"]] == ["a8w8", "a8w4", "mxint8"]


def test_cli_bad_usage_exits_2(capsys):
    assert main([]) == 2
    try:
        main(["no-such-command"])
    except SystemExit as exit_:
        assert exit_.code == 2
    else:
        raise AssertionError("argparse must exit with code 2")

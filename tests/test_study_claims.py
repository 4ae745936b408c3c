import json

import pytest

from vitcourse.claims import Claims, gather
from vitcourse.study import Study, run_key


def test_study_stores_and_reuses_finished_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("VITCOURSE_PROFILE", "smoke")
    calls = []

    def train_one(config):
        calls.append(config)
        return {"metrics": {"acc": config["x"] / 10}, "history": {"epochs": [{"epoch": 1}]}}

    study = Study("grid", root=tmp_path)
    for x in (1, 2, 3):
        study.run({"model": "m", "x": x}, train_one)
    assert len(calls) == 3
    again = Study("grid", root=tmp_path)  # the notebook is run again
    record = again.run({"model": "m", "x": 2}, train_one)
    assert len(calls) == 3 and record["metrics"]["acc"] == 0.2
    # results(): the runs this notebook asked for; everything=True: all stored runs of the study.
    assert [r["acc"] for r in again.results()] == [0.2]
    assert [r["acc"] for r in again.results(everything=True)] == [0.1, 0.2, 0.3]
    table = again.table(["x", "acc"], again.results(everything=True))
    assert "| x | acc |" in table and "| 3 | 0.3 |" in table
    ax = study.plot("x", "acc", hue="model")
    assert ax.get_xlabel() == "x" and ax.get_legend() is not None
    # Runs are kept per profile: a smoke run never stands in for a cpu run.
    monkeypatch.setenv("VITCOURSE_PROFILE", "cpu")
    Study("grid", root=tmp_path).run({"model": "m", "x": 2}, train_one)
    assert len(calls) == 4


def test_study_requires_metrics(tmp_path):
    with pytest.raises(ValueError, match="metrics"):
        Study("bad", root=tmp_path).run({"a": 1}, lambda c: {"acc": 1})
    assert not list(tmp_path.rglob("*.json"))


def test_study_can_drop_a_finished_runs_checkpoint(tmp_path):
    study = Study("grid", root=tmp_path)

    def train_one(config):  # writes a checkpoint where fit would
        study.checkpoint(config).parent.mkdir(parents=True)
        study.checkpoint(config).write_bytes(b"weights")
        return {"metrics": {"acc": 0.5}}
    study.run({"x": 1}, train_one)
    assert study.checkpoint({"x": 1}).exists()                     # kept by default
    record = study.run({"x": 2}, train_one, keep_checkpoint=False)
    assert record["metrics"] == {"acc": 0.5} and study.path({"x": 2}).exists()
    assert not study.checkpoint({"x": 2}).parent.exists()          # the record stays, the weights go


def test_run_key_is_stable_and_distinct():
    assert run_key({"a": 1, "b": 0.5}) == run_key({"b": 0.5, "a": 1})
    assert run_key({"a": 1}) != run_key({"a": 2})


def test_claims_table_saved_and_gathered(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VITCOURSE_PROFILE", "cpu")
    monkeypatch.setenv("VITCOURSE_CLAIMS_DIR", str(tmp_path))
    claims = Claims("00_test")
    claims.add("C0", "bigger is better", measured="acc 0.91 vs 0.80", holds=0.91 > 0.80)
    claims.add("C0b", "smaller is better", measured="acc 0.80 vs 0.91", holds=0.80 > 0.91)
    claims.add("C0", "bigger is better", measured="acc 0.92 vs 0.80", holds=True)  # a re-run replaces
    claims.show()
    text = (tmp_path / "00_test.md").read_text()
    assert "| C0 | bigger is better | acc 0.92 vs 0.80 | yes |" in text and "| NO |" in text
    assert text.count("| C0 |") == 1 and "profile: cpu" in capsys.readouterr().out
    saved = json.loads((tmp_path / "00_test.json").read_text())
    assert [c["holds"] for c in saved["claims"]] == [False, True]
    monkeypatch.setenv("VITCOURSE_PROFILE", "smoke")
    Claims("01_other").show()
    assert "not evidence" in (tmp_path / "01_other.md").read_text()
    out = gather(tmp_path, tmp_path / "all.md")
    assert out.index("00_test") < out.index("01_other")


def test_results_skip_a_corrupt_record_with_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("VITCOURSE_PROFILE", "smoke")
    study = Study("grid", root=tmp_path)
    for x in (1, 2):
        study.run({"x": x}, lambda c: {"metrics": {"acc": c["x"]}})
    bad = study.path({"x": 1})
    bad.write_text('{"config": {"x": 1}, "metr')  # a half-written file
    with pytest.warns(UserWarning, match=bad.name):
        rows = study.results()
    assert [r["acc"] for r in rows] == [2]
    with pytest.warns(UserWarning, match=bad.name):
        assert [r["acc"] for r in study.results(everything=True)] == [2]
    # run() trains the corrupt one again and stores it whole.
    calls = []
    with pytest.warns(UserWarning):
        study.run({"x": 1}, lambda c: calls.append(c) or {"metrics": {"acc": 10}})
    assert calls and [r["acc"] for r in study.results()] == [10, 2]


def test_run_dir_is_per_config_and_profile(tmp_path, monkeypatch):
    from vitcourse.study import run_dir
    monkeypatch.setenv("VITCOURSE_PROFILE", "cpu")
    a = run_dir("03_vit", {"lr": 1e-3, "epochs": 8}, root=tmp_path)
    assert a == run_dir("03_vit", {"epochs": 8, "lr": 1e-3}, root=tmp_path)  # key order does not matter
    assert a != run_dir("03_vit", {"lr": 2e-3, "epochs": 8}, root=tmp_path)
    assert a.parent == tmp_path / "03_vit" / "cpu" and "lr=0.001" in a.name


def test_t_critical_values():
    from vitcourse.claims import t_critical
    assert t_critical(2) == pytest.approx(4.303) and t_critical(4) == pytest.approx(2.776)
    assert t_critical(11) == t_critical(10) > t_critical(12) > t_critical(100) == 1.96   # stricter between entries
    with pytest.raises(ValueError, match="at least 2 runs"):
        t_critical(0)


def test_paired_difference_and_its_noise():
    from vitcourse.claims import paired, t_critical
    p = paired([0.80, 0.82, 0.81], [0.78, 0.79, 0.80])
    assert p.diffs == pytest.approx((0.02, 0.03, 0.01)) and p.mean == pytest.approx(0.02)
    assert p.se == pytest.approx(0.01 / 3 ** 0.5) and p.t_crit == t_critical(2)
    assert not p.real                           # 3.5 standard errors < 4.303 with 2 degrees of freedom
    assert paired([0.80, 0.82, 0.81, 0.83], [0.78, 0.79, 0.80, 0.81]).real
    assert "within the noise" in p.describe() and "+0.0200" in p.describe()
    # Pairing matters: the same numbers unpaired have arms whose spreads swamp a constant difference.
    q = paired([0.70, 0.80, 0.90], [0.69, 0.79, 0.89])
    assert q.real and q.mean == pytest.approx(0.01)
    one = paired([0.8], [0.7])
    assert not one.real and "one seed" in one.describe()
    with pytest.raises(ValueError, match="same, non-zero number"):
        paired([0.8, 0.9], [0.7])


def test_late_rise_reads_the_last_fifth_of_a_curve():
    from vitcourse.claims import late_rise
    steps = [100, 200, 300, 400, 500]
    assert late_rise(steps, [0.5, 0.6, 0.7, 0.75, 0.76]) == pytest.approx(0.01)   # 500 vs 400
    assert late_rise(steps, [0.5, 0.6, 0.7, 0.75, 0.76], fraction=0.5) == pytest.approx(0.16)  # vs 200
    with pytest.raises(ValueError, match="at least 2 points"):
        late_rise([100], [0.5])
    with pytest.raises(ValueError, match="evaluate more often"):
        late_rise([450, 500], [0.5, 0.6], fraction=0.2)


def test_late_window_is_wider_than_a_fifth_when_evaluations_are_few():
    from vitcourse.claims import late_rise, late_window, regime
    steps = [234, 468, 702, 936]                     # four evaluations: 0.8 * 936 = 748.8, so 702 is read
    assert late_window(steps) == (702, 936)
    assert late_rise(steps, [0.5, 0.6, 0.7, 0.74]) == pytest.approx(0.04)
    assert "from step 702 to 936" in regime(steps, {"a": [0.5, 0.6, 0.7, 0.74]}, 0.005).report("C")


def test_regime_needs_every_arm_converged_and_limited_by_data():
    from vitcourse.claims import regime
    steps = [200, 400, 600, 800, 1000]
    flat, rising = [0.5, 0.7, 0.75, 0.760, 0.762], [0.5, 0.6, 0.7, 0.75, 0.79]
    ok = regime(steps, {"a": flat, "b": flat}, 0.005, gaps={"a": 0.1, "b": 0.08}, overfit=0.05)
    assert ok.reached and ok.note("x") == "x" and "is reached" in ok.report("C1")
    slow = regime(steps, {"a": flat, "b": rising}, 0.005, gaps={"a": 0.1, "b": 0.01}, overfit=0.05)
    assert not slow.converged and not slow.data_limited and not slow.reached
    assert slow.note("x") == "regime not reached (not converged, not limited by data): x"
    assert "b test accuracy rose +0.0400" in slow.report("C1") and "is not reached" in slow.report("C1")
    assert regime(steps, {"a": flat}, 0.005).reached          # convergence alone when no data condition is given
    assert "a validation accuracy rose +0.0020" in regime(steps, {"a": flat}, 0.005, measure="validation accuracy").report("C")
    with pytest.raises(ValueError, match="both gaps and overfit"):
        regime(steps, {"a": flat}, 0.005, gaps={"a": 0.1})


def test_rise_noise_is_the_binomial_noise_of_a_difference_of_two_points():
    from vitcourse.claims import rise_noise
    assert rise_noise(0.8, 1000) == pytest.approx((2 * 0.16 / 1000) ** 0.5)
    assert rise_noise(0.8, 1000, runs=4) == pytest.approx(rise_noise(0.8, 1000) / 2)   # a mean of 4 curves
    assert rise_noise(1.0, 1000) == 0.0
    with pytest.raises(ValueError, match="images >= 1"):
        rise_noise(0.8, 0)


def test_paired_judge_tells_a_no_from_an_inconclusive_run():
    from vitcourse.claims import paired
    assert paired([0.80, 0.82, 0.81, 0.83], [0.78, 0.79, 0.80, 0.81]).judge(0.005) == "gain of 0.005 shown"
    assert paired([0.80, 0.81, 0.80], [0.80, 0.81, 0.801]).judge(0.005).startswith("below the threshold")
    assert paired([0.80, 0.75, 0.83], [0.78, 0.79, 0.80]).judge(0.005).startswith("inconclusive (95% interval")
    assert paired([0.8], [0.7]).judge(0.005) == "inconclusive (one seed: no noise estimate)"


def test_a_rehearsal_cut_curve_is_not_judged_converged(monkeypatch):
    """make rehearsal stops every run after its first stretch of steps: one point, no curve, not converged."""
    import math
    from vitcourse.claims import regime
    monkeypatch.setenv("VITCOURSE_REHEARSAL", "1")
    r = regime([200], {"a": [0.5]}, 0.005)
    assert math.isnan(r.rise["a"]) and not r.reached
    monkeypatch.delenv("VITCOURSE_REHEARSAL")
    with pytest.raises(ValueError, match="at least 2 points"):
        regime([200], {"a": [0.5]}, 0.005)


def test_a_claim_not_judged_and_one_whose_regime_was_not_reached_say_so(tmp_path, monkeypatch):
    monkeypatch.setenv("VITCOURSE_PROFILE", "cpu")
    monkeypatch.setenv("VITCOURSE_CLAIMS_DIR", str(tmp_path))
    claims = Claims("00_verdicts")
    claims.add("C1", "an optional section", measured="not run in this profile", holds=None)
    claims.add("C2", "early heads are local", measured="regime not reached (small data): 14 to 15 px", holds=False)
    claims.add("C3", "a plain failure", measured="0.80 < 0.90", holds=False)
    claims.show()
    text = (tmp_path / "00_verdicts.md").read_text()
    assert "| not run in this profile | not judged |" in text
    assert "14 to 15 px | NO (regime not reached) |" in text and "0.80 < 0.90 | NO |" in text
    assert [c["holds"] for c in json.loads((tmp_path / "00_verdicts.json").read_text())["claims"]] == [None, False, False]

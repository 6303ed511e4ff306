"""A cascade's decisions (which clips escalate, the threshold chosen on validation logits only), its timed
sequence of calls, and the suite's check of the jobs it names. The run itself: tests/test_docs.py (the
production-levers page's suite)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import write_suite
from vidbench.learn.cascade import cascade_point, choose_threshold, confidence, escalate
from vidbench.measure.latency import time_sequence
from vidbench.stats import ratio_of_means_interval
from vidbench.suite.compose import load_suite
from vidbench.suite.schema import SuiteError


def _logits(labels: np.ndarray, right: np.ndarray, margin: float, classes: int = 5) -> np.ndarray:
    """Logits whose top class is the label where ``right``, another class elsewhere, by ``margin``."""
    out = np.zeros((len(labels), classes), dtype=np.float32)
    top = np.where(right, labels, (labels + 1) % classes)
    out[np.arange(len(labels)), top] = margin
    return out


def test_confidence_is_the_softmax_of_the_top_class() -> None:
    logits = np.array([[0.0, 0.0], [10.0, 0.0], [1000.0, 0.0]], dtype=np.float32)  # the last overflows a naive exp
    assert confidence(logits) == pytest.approx([0.5, 1 / (1 + np.exp(-10)), 1.0])


def test_a_sure_and_right_fast_model_answers_alone() -> None:
    labels = np.arange(200) % 5
    fast, slow = _logits(labels, np.ones(200, bool), 9.0), _logits(labels, np.ones(200, bool), 9.0)
    chosen, points, _ = choose_threshold(fast, slow, labels)
    assert (chosen.threshold, chosen.escalations, chosen.top1) == (0.0, 0, 1.0)
    assert len(points) == 51


def test_an_unsure_fast_model_escalates_until_it_ties_the_slow_one() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 400)
    fast_right = rng.random(400) < 0.6
    fast = _logits(labels, fast_right, 0.5)  # right 60 %, never confident (softmax top ~0.29)
    fast[fast_right] *= 12  # ... except where it is right: confident there
    slow = _logits(labels, rng.random(400) < 0.95, 4.0)
    chosen, points, (low, _) = choose_threshold(fast, slow, labels)
    assert chosen.top1 >= low and 0 < chosen.escalations < 400
    assert escalate(fast, chosen.threshold).sum() == chosen.escalations
    cheaper = [p for p in points if p.escalations < chosen.escalations]
    assert all(p.top1 < low for p in cheaper)  # nothing cheaper ties the slow model


def test_a_drop_budget_replaces_the_interval_as_the_floor() -> None:
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 5, 300)
    fast = _logits(labels, rng.random(300) < 0.8, 1.5)
    slow = _logits(labels, rng.random(300) < 0.95, 4.0)
    slow_top1 = float((slow.argmax(axis=1) == labels).mean())
    strict, _, _ = choose_threshold(fast, slow, labels, max_drop=0.0)
    loose, _, _ = choose_threshold(fast, slow, labels, max_drop=100.0)
    tie, _, (low, _) = choose_threshold(fast, slow, labels)
    assert strict.top1 >= slow_top1 and loose.escalations == 0 and tie.top1 >= low
    assert loose.escalations <= tie.escalations <= strict.escalations


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 60))
def test_escalations_grow_with_the_threshold_and_the_choice_ties_or_is_best(seed: int, clips: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, clips)
    fast, slow = rng.normal(size=(clips, 4)) * 3, rng.normal(size=(clips, 4)) * 3
    chosen, points, (low, _) = choose_threshold(fast, slow, labels)
    counts = [p.escalations for p in points]
    assert counts == sorted(counts)
    assert chosen.top1 >= low - 1e-12 or chosen.top1 == max(p.top1 for p in points)
    assert cascade_point(fast, slow, labels, chosen.threshold) == chosen


def test_a_timed_sequence_times_every_call_on_every_item_in_rotating_order() -> None:
    seen: list[tuple[str, int]] = []
    calls = {name: (lambda i, n=name: seen.append((n, i))) for name in ("a", "b", "c")}
    samples = time_sequence(calls, 4, warmup=1)
    assert {name: len(ms) for name, ms in samples.items()} == {"a": 4, "b": 4, "c": 4}
    timed = seen[3:]  # after one warm-up item, each name once
    assert [n for n, i in timed if i == 0] == ["a", "b", "c"] and [n for n, i in timed if i == 1] == ["b", "c", "a"]


def test_the_ratio_of_means_has_a_paired_interval() -> None:
    slow = list(np.random.default_rng(2).uniform(9, 11, 200))
    ratio, low, high = ratio_of_means_interval([x / 2 for x in slow], slow)
    assert ratio == pytest.approx(0.5) and low == pytest.approx(0.5) and high == pytest.approx(0.5)
    ratio, low, high = ratio_of_means_interval(list(np.random.default_rng(3).uniform(4, 6, 200)), slow)
    assert low < ratio < high and 0.45 < ratio < 0.55


def test_a_cascade_of_a_model_the_suite_lacks_names_the_field_and_the_allowed_ones(tmp_path: Path) -> None:
    suite = write_suite(tmp_path, tmp_path, cascades=[{"fast": "x3d/tiny", "slow": "r2plus1d/tiny"}])
    with pytest.raises(SuiteError) as error:
        load_suite(suite)
    message = str(error.value)
    assert "cascades[0].fast" in message and "'x3d/tiny'" in message and "allowed: r2plus1d/tiny" in message
    cascade = {"fast": "r2plus1d/tiny", "slow": "r2plus1d/tiny", "thresholds": [2]}
    with pytest.raises(SuiteError, match=r"cascades\[0\]\.thresholds: .*from 0 to 1"):
        load_suite(write_suite(tmp_path, tmp_path, cascades=[cascade]))


def test_an_early_exit_model_stops_after_a_sure_exit_and_runs_through_otherwise() -> None:
    import torch

    from vidbench.plugins import load_plugins

    spec = load_plugins().model("r2plus1d")
    model = spec.build(spec.presets["tiny-exit"], 5).eval()
    clip = torch.randn(1, 3, 8, 32, 32)
    later: list[int] = []
    model.layer3.register_forward_hook(lambda *_: later.append(1))
    with torch.inference_mode():
        exit_logits, final = model(clip, all_exits=True)
        assert torch.equal(model(clip), final)
        logits, stage = model.forward_until(clip, 0.0)  # every exit is sure enough
        assert stage == 2 and torch.allclose(logits, exit_logits) and later == [1, 1]  # layer3 ran twice above only
        logits, stage = model.forward_until(clip, 1.01)  # no exit can be that sure
        assert stage is None and torch.allclose(logits, final) and later == [1, 1, 1]
    plain = spec.build(spec.presets["tiny"], 5)
    assert "exit_heads" not in dict(plain.named_children())  # tiny keeps torchvision's state dict

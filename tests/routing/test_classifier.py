"""The tier router's decisions, on requests written for these tests (tests/routing/cases.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from interlock.errors import InvalidRequest
from interlock.routing.tiers.classifier import FeatureClassifier
from interlock.routing.tiers.escalation import failed_check
from interlock.routing.tiers.features import extract
from interlock.routing.tiers.learned import LearnedModel, train
from interlock.routing.tiers.router import TierRouter
from interlock.settings import ConfigError, TierSettings, parse_settings
from tests.routing.cases import CASES


def body(text: str, sys: str | None = None, before: list[str] | None = None) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    if sys:
        messages.append({"role": "system", "content": sys})
    for i, turn in enumerate(before or []):
        messages.append({"role": "user" if i % 2 == 0 else "assistant", "content": turn})
    messages.append({"role": "user", "content": text})
    return {"model": "auto", "messages": messages}


@pytest.mark.parametrize(("tier", "text", "opts"), CASES, ids=[c[1][:40] for c in CASES])
def test_feature_path_picks_the_cheapest_adequate_tier(
    tier: str, text: str, opts: dict[str, Any]
) -> None:
    decision = FeatureClassifier().decide(extract(body(text, opts.get("sys"), opts.get("before"))))
    assert decision.tier == tier, decision.reason


def test_long_payload_does_not_make_an_easy_request_hard() -> None:
    passage = "Il pleuvait sur la ville depuis trois jours, et personne ne sortait. " * 15
    d = FeatureClassifier().decide(extract(body("What language is this? One word.\n\n" + passage)))
    assert d.tier == "small"


def test_a_one_line_proof_is_large() -> None:
    d = FeatureClassifier().decide(extract(body("Prove that sqrt(3) is irrational.")))
    assert (d.tier, d.reason) == ("large", "large: proof")


def test_quality_bias_moves_borderline_requests_up_never_down() -> None:
    f = extract(body("Who discovered penicillin?"))
    assert FeatureClassifier(0.0).decide(f).tier == "small"
    assert FeatureClassifier(1.0).decide(f).tier == "medium"
    hard = extract(body("Assess the risks of moving our office."))
    assert FeatureClassifier(-1.0).decide(hard).tier == "medium"
    assert FeatureClassifier(0.0).decide(hard).tier == "medium"
    assert FeatureClassifier(1.0).decide(hard).tier == "large"


def tiers(**kw: Any) -> TierSettings:
    base: dict[str, Any] = {"small": "s", "medium": "m", "large": "l"}
    base.update(kw)
    return TierSettings.model_validate(base)


LEGAL = {"legal": {"model": "lawyer", "description": "Contract clause review",
                   "keywords": ["indemnity", "governing law"]}}  # fmt: skip


def test_specialised_tier_matches_keywords_anywhere_in_the_conversation() -> None:
    r = TierRouter("auto", tiers(specialized=LEGAL))
    choice = r.choose(body("Both, please.", before=["Check the governing law section.", "Sure."]))
    assert (choice.tier, choice.kind, choice.alias) == ("legal", "specialized", "lawyer")
    assert choice.reason == "keyword 'governing law'"
    assert r.choose(body("Why is the sky blue?")).tier == "medium"


def test_pinning_and_unknown_tiers() -> None:
    r = TierRouter("auto", tiers(specialized=LEGAL))
    assert r.choose(body("Prove Fermat's little theorem."), pin="small").alias == "s"
    assert r.choose(body("hi"), pin=" Legal ").alias == "lawyer"
    with pytest.raises(InvalidRequest) as err:
        r.choose(body("hi"), pin="huge")
    assert err.value.code == "invalid_tier"


def test_a_missing_tier_is_served_by_the_next_larger_one() -> None:
    r = TierRouter("auto", tiers(small=None))
    choice = r.choose(body("Is a tomato a fruit? Yes or no."))
    assert (choice.tier, choice.alias) == ("medium", "m")
    assert "no small tier" in choice.reason
    only_small = TierRouter("auto", TierSettings(small="s"))
    assert only_small.choose(body("Prove that e is irrational.")).alias == "s"
    assert r.next_up(choice) is not None and r.next_up(choice).alias == "l"  # type: ignore[union-attr]
    assert r.next_up(r.choose(body("Prove that e is irrational."))) is None


def answer(content: str | None = None, **message: Any) -> bytes:
    return orjson.dumps({"choices": [{"message": {"role": "assistant", "content": content,
                                                  **message}}]})  # fmt: skip


ALL = ("empty", "refusal", "invalid_json", "tool_arguments")


def test_escalation_checks() -> None:
    plain = {"messages": []}
    as_json = {"messages": [], "response_format": {"type": "json_object"}}
    assert failed_check(plain, answer("Paris"), ALL) is None
    assert failed_check(plain, answer("  "), ALL) == "empty"
    assert failed_check(plain, answer("I'm sorry, but I can't help with that."), ALL) == "refusal"
    assert failed_check(plain, answer(None, refusal="no"), ALL) == "refusal"
    assert failed_check(as_json, answer('{"a": 1'), ALL) == "invalid_json"
    assert failed_check(as_json, answer('{"a": 1}'), ALL) is None
    assert failed_check(as_json, answer('{"a": 1'), ("empty",)) is None
    schema = {"messages": [], "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": {"type": "object", "required": ["city"]}}}}  # fmt: skip
    assert failed_check(schema, answer('{"town": "Oslo"}'), ALL) == "invalid_json"
    tool = {"messages": [], "tools": [{"type": "function", "function": {
        "name": "get", "parameters": {"type": "object", "required": ["id"]}}}]}  # fmt: skip

    def call(args: str, name: str = "get") -> bytes:
        return answer(None, tool_calls=[{"id": "c", "type": "function",
                                         "function": {"name": name, "arguments": args}}])  # fmt: skip

    assert failed_check(tool, call('{"id": 3}'), ALL) is None
    assert failed_check(tool, call('{"id": 3'), ALL) == "tool_arguments"
    assert failed_check(tool, call("{}"), ALL) == "tool_arguments"
    assert failed_check(tool, call('{"id": 3}', "other"), ALL) == "tool_arguments"
    assert failed_check(plain, b"not json", ALL) is None


def test_learned_model_round_trips_and_prefers_the_safe_side(tmp_path: Path) -> None:
    import numpy as np

    rng = np.random.default_rng(0)
    centres = {"small": -2.0, "medium": 0.0, "specialized": 1.0, "large": 2.0}
    labels = [t for t in centres for _ in range(30)]
    x = np.stack([rng.normal(centres[t], 0.3, size=4) for t in labels])
    model = train(x, labels)
    model.save(tmp_path / "m.npz")
    loaded = LearnedModel.load(tmp_path / "m.npz")
    assert np.allclose(loaded.proba(x[:3]), model.proba(x[:3]))
    assert loaded.tier(np.full(4, -2.0), 0.15)[0] == "small"
    assert loaded.tier(np.full(4, 2.0), 0.15)[0] == "large"
    # Halfway between small and medium: a strict tolerance sends it up, not down.
    assert loaded.tier(np.full(4, -1.0), 0.01)[0] != "small"


def test_tier_settings_are_checked() -> None:
    base: dict[str, Any] = {
        "providers": {"p": {"kind": "openai", "api_key": "k"}},
        "deployments": {"d": {"provider": "p", "model": "gpt-4o-mini"},
                        "e": {"provider": "p", "model": "text-embedding-3-small",
                              "kind": "embeddings"}},
    }  # fmt: skip
    ok = parse_settings({**base, "models": {"cheap": {"deployments": ["d"]},
                                            "auto": {"tiers": {"small": "cheap"}}}})  # fmt: skip
    assert ok.models["auto"].tiers is not None
    bad = [
        {"auto": {"tiers": {"small": "nope"}}},
        {"auto": {"tiers": {"small": "auto"}}},
        {"emb": {"deployments": ["e"]}, "auto": {"tiers": {"small": "emb"}}},
        {"cheap": {"deployments": ["d"]}, "auto": {"tiers": {}}},
        {"cheap": {"deployments": ["d"]}, "auto": {"deployments": ["d"],
                                                   "tiers": {"small": "cheap"}}},
        {"auto": {}},
        {"cheap": {"deployments": ["d"]}, "auto": {"tiers": {"small": "cheap", "specialized": {
            "x": {"model": "cheap", "description": "d", "patterns": ["("]}}}}},
    ]  # fmt: skip
    for models in bad:
        with pytest.raises(ConfigError):
            parse_settings({**base, "models": models})

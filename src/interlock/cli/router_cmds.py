"""``interlock router train`` and ``interlock report routing``: model selection's commands.

``router train`` fits the optional learned tier router (docs/routing.md) on a labelled
JSONL file and writes the artifact that ``models.<alias>.tiers.model_path`` loads.
``report routing`` shows, from the ledger, each tier's share of traffic and cost against
an always-large baseline.
"""

from __future__ import annotations

from typing import Any

import click

from interlock.cli.common import (
    cli_settings,
    database_options,
    format_option,
    render,
    since_option,
    text_of,
    until_option,
    window,
    window_line,
    with_engine,
)
from interlock.settings import Settings


@click.group()
def router() -> None:
    """The tier router (model selection): train its optional learned model."""


@router.command("train")
@click.argument("data", type=click.Path(exists=True, dir_okay=False))
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="Where to write the artifact (.npz).")  # fmt: skip
@click.option("--l2", type=click.FloatRange(0, 10), default=0.01, show_default=True,
              help="L2 regularisation.")  # fmt: skip
@click.option("--cv", type=click.IntRange(0, 20), default=5, show_default=True,
              help="Folds of cross-validation to report first (0: none).")  # fmt: skip
def train_cmd(data: str, output: str, l2: float, cv: int) -> None:
    """Train the learned router on DATA (JSONL lines with "messages" and "tier")."""
    from interlock.localembed.model import available
    from interlock.routing.tiers import training
    from interlock.routing.tiers.features import extract
    from interlock.routing.tiers.learned import model_input

    if not available():
        raise click.ClickException("the learned router needs interlock[local] (MiniLM)")
    try:
        examples = training.load(data)
    except (ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    if len(examples) < 20:
        raise click.ClickException("at least 20 labelled requests are needed")
    vectors = training.embed(examples)
    if cv >= 2:

        def predict(model: Any, e: training.Example, v: Any) -> str:
            return str(model.tier(model_input(extract(e.body), v), 0.15)[0])

        preds = training.cross_validate(examples, vectors, predict, cv, l2=l2)
        s = training.scores([e.tier for e in examples], preds)
        click.echo(
            f"{cv}-fold cross-validation: accuracy {s['accuracy']:.3f}, under-routing "
            f"{s['under_routing_rate']:.3f}, cost vs always-large {s['cost_vs_large']:.3f}"
        )
    training.fit(examples, vectors, l2=l2).save(output)
    click.echo(f"wrote {output} ({len(examples)} examples)")


_ROUTING_COLUMNS = [
    ("tier", "TIER", "str"),
    ("requests", "REQUESTS", "int"),
    ("share", "SHARE", "pct"),
    ("escalated", "ESCALATED", "int"),
    ("cost_usd", "COST", "usd"),
    ("cost_share", "COST SHARE", "pct"),
    ("large_cost_usd", "AT LARGE PRICE", "usd"),
    ("saved_usd", "SAVED", "usd"),
]


def _large_price(settings: Settings, model: str | None) -> tuple[str | None, Any]:
    """(the tiered alias, the price its large tier charges) from the configuration."""
    from decimal import Decimal

    from interlock.spend.prices import PriceTable, UnknownPricePolicy, resolve_price

    tiered = {a: s.tiers for a, s in settings.models.items() if s.tiers is not None}
    if model is not None and model not in tiered:
        raise click.BadParameter(f"{model!r} is not a tiered alias", param_hint="--model")
    alias = model or next(iter(tiered), None)
    if alias is None:
        return None, None
    tiers = tiered[alias]
    large = tiers.large or tiers.medium or tiers.small
    dep_name = settings.models[str(large)].deployments[0]
    dep = settings.deployments[dep_name]
    provider = settings.providers.get(dep.provider)
    u = settings.spend.unknown_price
    policy = UnknownPricePolicy(
        u.action, Decimal(str(u.input_per_mtok)), Decimal(str(u.output_per_mtok))
    )
    decision = resolve_price(
        dep, provider.kind if provider else None, PriceTable.load(), policy, deployment=dep_name
    )
    return alias, decision.price


@click.command("routing")
@database_options
@click.option("--model", default=None, help="The tiered alias whose large tier is the baseline.")
@since_option
@until_option
@format_option
def report_routing(
    config: str | None, model: str | None, since: str, until: str | None, fmt: str
) -> None:
    """Per tier: share of traffic, cost, and cost against always-large (model selection)."""
    from interlock.spend.routing_report import baseline_subject, routing_savings

    start, end = window(since, until)
    settings = cli_settings(config)
    alias, price = _large_price(settings, model)

    async def go(engine: Any) -> Any:
        return await routing_savings(engine, start, end, price)

    rows = with_engine(settings, go)
    click.echo(render(rows, _ROUTING_COLUMNS, fmt))
    if fmt == "table":
        total = rows[-1]
        base = total["large_cost_usd"]
        ratio = (
            f"{total['cost_usd'] / base * 100:.1f}% of always-large"
            if base
            else "no large-tier price to compare with"
        )
        click.echo(
            f"\n{baseline_subject(alias)} "
            f"(${text_of(total['cost_usd'])} paid, {ratio}); {window_line(start, end)}"
        )

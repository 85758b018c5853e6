"""`newsletter topics evaluate` and `newsletter topics suggest`: thin commands over ``newsletter.matching.evaluate``
and ``newsletter.matching.suggest`` (registered on the `topics` group in ``newsletter.cli.main``)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

import click

from newsletter.cli.dates import MOMENT
from newsletter.cli.words import plural
from newsletter.config import Settings

if TYPE_CHECKING:
    from newsletter.matching.evaluate import Evaluation

SWEEP = tuple(round(0.02 * i, 2) for i in range(31))
_DATE = MOMENT


class _App(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def store(self) -> Any: ...


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _print_evaluation(result: Evaluation) -> None:
    width = max([len("topic"), *(len(s.slug) for s in result.scores)])
    click.echo(f"method {result.method}, threshold {result.threshold:.2f}: {plural(result.papers, 'paper')}, "
               f"{result.unlabelled} labelled with no topic ({result.unlabelled_matched} of them matched one)")
    header = ("labelled", "matched", "correct", "precision", "recall", "F1")
    click.echo(f"{'topic':<{width}}  " + "  ".join(f"{h:>9}" for h in header))
    for s in result.scores:
        cells = (str(s.labelled), str(s.matched), str(s.correct), _number(s.precision), _number(s.recall),
                 _number(s.f1))
        click.echo(f"{s.slug:<{width}}  " + "  ".join(f"{c:>9}" for c in cells))
    counted = sum(1 for s in result.scores if s.f1 is not None)
    click.echo(f"macro-F1: {_number(result.macro_f1)} (mean F1 of the {counted} topics with labelled papers)")


@click.command("evaluate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--threshold", type=click.FloatRange(0, 1), help="Score at this similarity threshold instead of the "
              "configured one ([matching] similarity_threshold or embedding_threshold, by method).")
@click.option("--sweep", is_flag=True, help="Also print macro-F1 at the thresholds 0.00, 0.02, …, 0.60.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape documented in docs/cli.md).")
@click.pass_obj
def evaluate(app: _App, file: Path, threshold: float | None, sweep: bool, as_json: bool) -> None:
    """Score the configured matching method on a labelled sample: FILE.csv with columns title,abstract,label.

    `label` is the slug of the topic the paper belongs to, or empty when it belongs to none; an optional
    `categories` column lists its arXiv categories. Prints, per topic, the papers labelled, matched and
    correctly matched, precision, recall and F1, then the macro-F1: tune the threshold with it.
    """
    from newsletter.matching.evaluate import evaluate_sample  # scikit-learn: imported when used, not for --help

    results = evaluate_sample(app.settings, app.store, file, threshold=threshold, thresholds=SWEEP if sweep else ())
    if as_json:
        payload = results[0].as_json()
        if sweep:
            payload["sweep"] = [{"threshold": r.threshold, "macro_f1": r.as_json()["macro_f1"]} for r in results[1:]]
        click.echo(json.dumps(payload, indent=2))
        return
    _print_evaluation(results[0])
    if sweep:
        best = max(results[1:], key=lambda r: r.macro_f1 or 0.0)
        click.echo("sweep: " + " ".join(f"{r.threshold:.2f}:{_number(r.macro_f1)}" for r in results[1:]))
        click.echo(f"best threshold on this sample: {best.threshold:.2f} (macro-F1 {_number(best.macro_f1)})")


@click.command("suggest")
@click.option("--since", type=_DATE, help="Only papers first seen at or after DATE (in the newsletter's time zone); "
              "default: every stored paper.")
@click.option("--clusters", type=click.IntRange(min=1), help="How many clusters (default: √(papers/2), 2 to 12).")
@click.option("--min-size", type=click.IntRange(min=1), default=3, show_default=True,
              help="Suggest no topic for a cluster smaller than this.")
@click.option("--examples", type=click.IntRange(min=0), default=3, show_default=True,
              help="Example titles shown per suggested topic.")
@click.pass_obj
def suggest(app: _App, since: datetime | None, clusters: int | None, min_size: int, examples: int) -> None:
    """Propose new topics for the papers that match none, as [[topics]] TOML ready to paste into config.toml.

    Clusters those papers (their stored embeddings with [matching] method = "embedding", else TF-IDF) and
    names each cluster by its most distinctive terms (class-based TF-IDF), with its size and example titles.
    """
    if since is not None and since.tzinfo is None:
        since = since.replace(tzinfo=ZoneInfo(app.settings.newsletter.timezone))
    from newsletter.matching.suggest import suggest_from_store, to_toml  # scikit-learn, when used

    suggestions = suggest_from_store(app.settings, app.store, since=since, clusters=clusters, min_size=min_size,
                                     examples=examples)
    click.echo(to_toml(suggestions, since=since.date().isoformat() if since else None), nl=False)

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

    def open_store(self) -> Any: ...


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def _print_evaluation(result: Evaluation, *, title: str | None = None) -> None:
    width = max([len("topic"), *(len(s.slug) for s in result.scores)])
    rule = "floor" if result.decision == "calibrated" else "threshold"
    click.echo(title or f"method {result.method}, {result.decision} rule, {rule} {result.threshold:.2f}: "
               f"{plural(result.papers, 'paper')}, {result.unlabelled} labelled with no topic "
               f"({result.unlabelled_matched} of them matched one)")
    header = ("labelled", "matched", "correct", "precision", "recall", "F1")
    click.echo(f"{'topic':<{width}}  " + "  ".join(f"{h:>9}" for h in header))
    for s in result.scores:
        cells = (str(s.labelled), str(s.matched), str(s.correct), _number(s.precision), _number(s.recall),
                 _number(s.f1))
        click.echo(f"{s.slug:<{width}}  " + "  ".join(f"{c:>9}" for c in cells))
    counted = sum(1 for s in result.scores if s.f1 is not None)
    click.echo(f"macro-F1: {_number(result.macro_f1)} (mean F1 of the {counted} topics with labelled papers)")


def _print_confusions(result: Evaluation, *, limit: int = 5) -> None:
    """The most frequent confusions: labelled papers of one topic matched to another instead of theirs."""
    if not result.confusions:
        click.echo("confusions: none (no labelled paper matched another topic instead of its own)")
        return
    shown = [f"{label} → {other}: {count / total:.0%} ({count} of {total})"
             for label, other, count, total in result.confusions[:limit]]
    click.echo("most frequent confusions: " + "; ".join(shown))


@click.command("evaluate")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--threshold", type=click.FloatRange(0, 1), help="Score at this value instead of the configured one: "
              "the floor of the calibrated rule ([matching] tfidf_floor or embedding_floor), or the threshold of "
              "the threshold rule (similarity_threshold or embedding_threshold).")
@click.option("--sweep", is_flag=True, help="Also try the values 0.00, 0.02, …, 0.60 and print the per-topic table "
              "at the best one.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (shape documented in docs/cli.md).")
@click.pass_obj
def evaluate(app: _App, file: Path, threshold: float | None, sweep: bool, as_json: bool) -> None:
    """Score the configured matching method on a labelled sample: FILE.csv with columns title,abstract,label.

    `label` is the slug of the topic the paper belongs to, or empty when it belongs to none; an optional
    `categories` column lists its arXiv categories. Prints, per topic, the papers labelled, matched and
    correctly matched, precision, recall and F1, the macro-F1 and the most frequent confusions. Embeddings of
    the sample are kept by text hash, so a second run over the same file embeds nothing.
    """
    from rich.console import Console
    from rich.progress import Progress

    from newsletter.matching.evaluate import evaluate_sample  # scikit-learn: imported when used, not for --help

    console = Console(stderr=True)
    with Progress(console=console, transient=True, disable=as_json or not console.is_terminal) as bar:
        task = bar.add_task("embedding the sample", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        results = evaluate_sample(app.settings, app.open_store(), file, threshold=threshold,
                                  thresholds=SWEEP if sweep else (), progress=progress)
    best = max(results[1:], key=lambda r: r.macro_f1 or 0.0) if sweep else None
    if as_json:
        payload = results[0].as_json()
        if best is not None:
            payload["sweep"] = [{"threshold": r.threshold, "macro_f1": r.as_json()["macro_f1"]} for r in results[1:]]
            payload["best"] = best.as_json()
        click.echo(json.dumps(payload, indent=2))
        return
    _print_evaluation(results[0])
    _print_confusions(results[0])
    if best is not None:
        click.echo("sweep: " + " ".join(f"{r.threshold:.2f}:{_number(r.macro_f1)}" for r in results[1:]))
        _print_evaluation(best, title=f"at the best value on this sample, {best.threshold:.2f} "
                                      f"(macro-F1 {_number(best.macro_f1)}):")
        _print_confusions(best)


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

    suggestions = suggest_from_store(app.settings, app.open_store(), since=since, clusters=clusters, min_size=min_size,
                                     examples=examples)
    click.echo(to_toml(suggestions, since=since.date().isoformat() if since else None), nl=False)

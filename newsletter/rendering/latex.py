"""LaTeX in titles and abstracts becomes Unicode text: ``$\\alpha \\geq 2$`` reads "α ≥ 2".

arXiv titles and abstracts are written in LaTeX (about 6% of the bundled abstracts have math), and an
email or a feed reader shows ``$\\text{BrowseComp-Plus}_{\\text{CM}}$`` as it is. pylatexenc knows the
macros; this module only decides *what* is LaTeX, because feed text is mostly plain: a lone "$5" or "50%"
or "~" must stay as written, while pylatexenc would read them as math, a comment and a non-breaking space.
So only ``$...$`` spans, text-formatting macros (``\\textbf{...}``), escaped specials (``\\%``) and known
symbol macros (``\\alpha``) are converted; the rest of the text is left alone.

Applied where text is rendered (email context, archive pages, Atom feeds), never to what is stored.
"""

from __future__ import annotations

import re
from functools import lru_cache

from pylatexenc.latex2text import LatexNodes2Text

_MATH = re.compile(r"\$(?!\s)(?P<body>[^$\n]{1,300}?)(?<![\s\\])\$")
_FORMAT = re.compile(
    r"\\(?:textbf|textit|textrm|textsf|texttt|textsc|emph|mathrm|mathbf|mathit|text)\{(?P<body>[^{}]*)\}"
)
_ESCAPED = re.compile(r"\\(?P<char>[%&#_$])")
_MACRO = re.compile(r"\\[A-Za-z]+")
_MACRO_THEN_SPACE = re.compile(r"(\\[A-Za-z]+) (?=[\w\\])")
_SCRIPT = re.compile(r"(?P<kind>[_^])(?:\{(?P<group>[^{}\\]{1,20})\}|(?P<single>[A-Za-z0-9+\-=()]))")
_BRACES = re.compile(r"[{}]")

SUBSCRIPTS = dict(zip("0123456789+-=()aehijklmnoprstuvx", "₀₁₂₃₄₅₆₇₈₉₊₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓ", strict=True))
SUPERSCRIPTS = dict(zip("0123456789+-=()abcdefghijklmnoprstuvwxyzT",
                        "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁼⁽⁾ᵃᵇᶜᵈᵉᶠᵍʰⁱʲᵏˡᵐⁿᵒᵖʳˢᵗᵘᵛʷˣʸᶻᵀ", strict=True))


@lru_cache(maxsize=1)
def _converter() -> LatexNodes2Text:
    return LatexNodes2Text(math_mode="text", strict_latex_spaces=True)


def _script(match: re.Match[str]) -> str:
    """``x_{12}`` → "x₁₂" when every character has a Unicode sub/superscript, else "x_12"."""
    text = match["group"] if match["group"] is not None else match["single"]
    table = SUBSCRIPTS if match["kind"] == "_" else SUPERSCRIPTS
    if all(c in table for c in text):
        return "".join(table[c] for c in text)
    return f"{match['kind']}{text}"


def _math(body: str) -> str:
    body = _FORMAT.sub(lambda m: m["body"], body)  # \text{...} inside math is words; keep its spaces
    body = _SCRIPT.sub(_script, body)
    text = _converter().latex_to_text(_MACRO_THEN_SPACE.sub(r"\1{} ", body))
    return _BRACES.sub("", text).strip()


def _macro(match: re.Match[str]) -> str:
    """A symbol macro outside math (``\\alpha``): converted when pylatexenc knows it, else kept."""
    converted: str = _converter().latex_to_text(match.group(0))
    return converted if converted.strip() else match.group(0)


def latex_to_text(text: str) -> str:
    """Unicode text for the LaTeX parts of ``text`` (see the module docstring); plain text is unchanged."""
    if "$" not in text and "\\" not in text:
        return text
    text = _MATH.sub(lambda m: _math(m["body"]), text)
    if "\\" in text:
        text = _FORMAT.sub(lambda m: m["body"], text)
        text = _ESCAPED.sub(lambda m: m["char"], text)
        text = _MACRO.sub(_macro, text)
    return text

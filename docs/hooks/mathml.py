"""MkDocs hook: renders the formulas to MathML at build time, so they show with no network.

`pymdownx.arithmatex` (`generic: true`) wraps `$...$` / `$$...$$` as
`<span class="arithmatex">\\(...\\)</span>` and `<div class="arithmatex">\\[...\\]</div>`.
This hook converts each one to MathML with the pure-Python `latex2mathml` package; browsers
render MathML natively (Chromium since 109, Firefox, Safari), so the site loads no MathJax or
KaTeX script and no font from a CDN. A formula that `latex2mathml` cannot convert fails the
build with its text.
"""

import html
import re

from latex2mathml.converter import convert

_MATH = re.compile(
    r'<(?P<tag>span|div) class="arithmatex">\s*'
    r"(?:\\\((?P<inline>.*?)\\\)|\\\[(?P<block>.*?)\\\])\s*</(?P=tag)>",
    re.DOTALL,
)


def to_mathml(latex, display):
    """MathML for one formula; `display` is "inline" or "block"."""
    return convert(latex.strip(), display=display)


def _replace(match):
    block = match.group("block")
    latex = html.unescape(block if block is not None else match.group("inline"))
    display = "block" if block is not None else "inline"
    try:
        mathml = to_mathml(latex, display)
    except Exception as error:  # latex2mathml raises several exception types
        raise ValueError(f"latex2mathml cannot convert the formula {latex!r}: {error}") from error
    tag = "div" if display == "block" else "span"
    return f'<{tag} class="arithmatex mathml">{mathml}</{tag}>'


def on_page_content(html_text, page, config, files):
    return _MATH.sub(_replace, html_text)

"""Griffe extension for the API pages: shows docstring examples (`>>>` lines) as code.

The package's docstrings put their doctests under a plain `Example:` line, which the Google
docstring parser keeps as text; Markdown would then read `>>>` as nested block quotes. This
extension fences every run of doctest lines (from a `>>>` line to the next blank line) as a
`pycon` code block before the docstring is parsed. Docstrings in the code stay as they are
(the test suite runs them as doctests).
"""

from griffe import Extension


def fence_doctests(text):
    """`text` with each doctest run wrapped in a ```pycon fence (fenced code left alone)."""
    out, in_fence, in_doctest, indent = [], False, False, ""
    for line in text.splitlines():
        stripped = line.strip()
        if in_doctest and not stripped:
            out.append(f"{indent}```")
            in_doctest = False
        if stripped.startswith("```") and not in_doctest:
            in_fence = not in_fence
        elif not in_fence and not in_doctest and stripped.startswith(">>>"):
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}```pycon")
            in_doctest = True
        out.append(line)
    if in_doctest:
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestBlocks(Extension):
    """Fences the doctests of every documented object."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)

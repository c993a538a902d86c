"""Tables that fit the console without cutting a value.

rich squeezes a table that is too wide by cutting cells (`1,181,1…`, `0.0` for 0.001, a header
shrunk to `e`): a number that is shown cut is worse than one not shown at all. Here the caller
describes a table as *layouts*, from the richest to the leanest (the leaner ones drop low-value
columns first: an index, MACs, img/s), and `print_table` picks the first layout whose narrowest
form fits the console:

* a column of values (`wrap=False`) is always as wide as its longest value: numbers, shapes and
  percentages are never wrapped or cut;
* a column of text (`wrap=True`: names, descriptions) may wrap, but only between words;
* headers wrap between words (`train loss` over two lines).

When even the leanest layout cannot fit (a very narrow terminal), each row becomes a paragraph
of `header: value` pairs, wrapped between pairs: not a grid any more, but every value whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rich import box as rich_box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text


@dataclass
class Column:
    """One column: its header, its cells, and how it may be laid out.

    `samples` are measured like cells but not printed: a table printed one row at a time (the
    training epochs) sizes its columns for values still to come, so the rows line up.
    """

    header: str
    cells: Sequence[str | Text]
    justify: str = "left"
    wrap: bool = False  # True: may wrap between words; False: never wraps (values)
    style: str | None = None
    samples: Sequence[str] = field(default_factory=tuple)


def _text(cell: str | Text) -> Text:
    return cell if isinstance(cell, Text) else Text(str(cell))


def _lines(text: str) -> list[str]:
    return text.split("\n")


def _longest_word(text: str) -> int:
    """The widest thing wrapping cannot split: a word, or a line's indentation plus its first word."""
    widest = 0
    for line in _lines(text):
        words = line.split()
        if words:
            indent = len(line) - len(line.lstrip())
            widest = max(widest, indent + Text(words[0]).cell_len, *(Text(w).cell_len for w in words))
    return widest


def _line_width(text: str) -> int:
    return max(Text(line).cell_len for line in _lines(text))


def natural_width(column: Column) -> int:
    """The width that shows every cell and the header with no line wrapped."""
    texts = [_text(c).plain for c in column.cells] + list(column.samples)
    return max(_line_width(t) for t in [column.header, *texts])


def minimum_width(column: Column) -> int:
    """The narrowest the column may be: every value whole, text and header wrapped between words."""
    texts = [_text(c).plain for c in column.cells] + list(column.samples)
    measure = _longest_word if column.wrap else _line_width
    return max(1, _longest_word(column.header), *(measure(t) for t in texts))


def _new_table(columns: Sequence[Column], widths: Sequence[int] | None, style: dict) -> Table:
    table = Table(**style)
    for i, column in enumerate(columns):
        table.add_column(column.header, justify=column.justify, style=column.style, overflow="fold",
                         width=None if widths is None else widths[i])
    return table


def _overhead(columns: Sequence[Column], style: dict, console: Console) -> int:
    """Columns of padding and borders the table adds around its cells (measured, not guessed)."""
    probe = _new_table(columns, [1] * len(columns), {**style, "title": None, "caption": None})
    measured = Measurement.get(console, console.options.update_width(1 << 20), probe)
    return measured.maximum - len(columns)


def _distribute(natural: list[int], minimum: list[int], room: int) -> list[int]:
    """Widths between `minimum` and `natural` that add up to at most `room` (given minimum fits):
    the spare columns go, one at a time, to the column that is furthest from its natural width."""
    widths = list(minimum)
    spare = room - sum(widths)
    while spare > 0:
        short = [(natural[i] - widths[i], i) for i in range(len(widths)) if widths[i] < natural[i]]
        if not short:
            break
        widths[max(short)[1]] += 1
        spare -= 1
    return widths


def fit_table(console: Console, layouts: Sequence[Sequence[Column]], **style) -> tuple[Table, int]:
    """(table, width it needs) for the console's width; `style` goes to rich's `Table` (title...).

    Dropping low-value columns comes before wrapping text: the first layout that fits with no
    cell wrapped, else the first that fits with text wrapped between words, else the leanest
    one at its narrowest, which is then wider than the console.
    """
    if not layouts:
        raise ValueError("fit_table needs at least one layout")
    style = {"box": rich_box.SIMPLE_HEAD, "header_style": "bold", "title_justify": "left", "show_edge": False,
             "pad_edge": False, "collapse_padding": True, **style}
    room = console.width
    measured = []
    for columns in layouts:
        overhead = _overhead(columns, style, console)
        natural = [natural_width(c) for c in columns]
        if sum(natural) + overhead <= room:
            return _filled(columns, natural, style), sum(natural) + overhead
        measured.append((columns, overhead, natural, [minimum_width(c) for c in columns]))
    for columns, overhead, natural, minimum in measured:
        if sum(minimum) + overhead <= room:
            return _filled(columns, _distribute(natural, minimum, room - overhead), style), room
    columns, overhead, _, minimum = measured[-1]
    return _filled(columns, minimum, style), sum(minimum) + overhead


def _filled(columns: Sequence[Column], widths: Sequence[int], style: dict) -> Table:
    table = _new_table(columns, widths, style)
    for row in zip(*(c.cells for c in columns), strict=True):
        table.add_row(*row)
    return table


def print_table(console: Console, layouts: Sequence[Sequence[Column]], **style) -> None:
    """Print the first layout that fits the console (see `fit_table`), never cutting a value.

    When no layout fits even with text wrapped, each row is printed as one paragraph of
    `header: value` pairs (all the columns of the richest layout), which wraps between pairs
    at any width instead of leaving the terminal to break a table's lines.
    """
    table, needed = fit_table(console, layouts, **style)
    if needed <= console.width:
        console.print(table)
        return
    title = style.get("title")
    if title:
        console.print(title, style="italic")
    columns = layouts[0]
    for i in range(len(columns[0].cells)):
        cells = [(c.header, _text(c.cells[i])) for c in columns]
        pairs = [Text.assemble((f"{header}: ", "bold"), (" ".join(cell.plain.split()), cell.style))
                 for header, cell in cells if cell.plain.strip()]
        for line in _packed(pairs, console.width, first="- ", rest="  "):
            console.print(line, soft_wrap=True)


def _packed(pairs: list[Text], width: int, *, first: str, rest: str, gap: str = "  ") -> list[Text]:
    """Lines of `pairs` joined by `gap`, each line as full as `width` allows, a pair never split."""
    lines: list[Text] = []
    line, empty = Text(first), True
    for pair in pairs:
        if not empty and line.cell_len + len(gap) + pair.cell_len > width:
            lines.append(line)
            line, empty = Text(rest), True
        if not empty:
            line.append(gap)
        line.append_text(pair)
        empty = False
    lines.append(line)
    return lines


def print_items(console: Console, items: Sequence[str | Text], *, gap: str = "   ") -> None:
    """Print labelled values (`total params 1,234`) on as few lines as the console allows, each item
    whole: a narrow terminal puts the next item on the next line instead of splitting one."""
    for line in _packed([_text(item) for item in items], console.width, first="", rest="", gap=gap):
        console.print(line, soft_wrap=True)


def without(columns: Sequence[Column], *headers: str) -> list[Column]:
    """`columns` less the ones with these headers (to build the leaner layouts)."""
    return [c for c in columns if c.header not in headers]


def leaner_layouts(columns: Sequence[Column], drop_order: Sequence[str]) -> list[list[Column]]:
    """The full layout, then one more column of `drop_order` dropped at each step."""
    layouts = [list(columns)]
    for i in range(len(drop_order)):
        layout = without(columns, *drop_order[: i + 1])
        if len(layout) < len(layouts[-1]):
            layouts.append(layout)
    return layouts

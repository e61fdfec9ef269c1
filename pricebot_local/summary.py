"""The market-data summary as a terminal table, for ``pricebot up``."""

from __future__ import annotations

from rich.table import Table

from pricebot.summary import SymbolSummary


def summary_table(rows: list[SymbolSummary], title: str = "Market data") -> Table:
    table = Table(title=title)
    for column in (
        "symbol",
        "candles",
        "from (UTC)",
        "to (UTC)",
        "gaps",
        "missing min",
        "features",
    ):
        table.add_column(column, justify="right" if column != "symbol" else "left")
    for row in rows:
        table.add_row(
            row.symbol, f"{row.candles:,}", f"{row.first:%Y-%m-%d %H:%M}",
            f"{row.last:%Y-%m-%d %H:%M}", str(row.gaps), f"{row.gap_minutes:,}",
            f"{row.feature_rows:,}",
        )  # fmt: skip
    return table

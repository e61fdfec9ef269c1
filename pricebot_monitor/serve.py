"""The page's server: Streamlit's, with the page's heavy imports done while it starts.

Streamlit runs the page's script in the server process for each browser session, so whatever the
script imports is imported once per process, by the first visitor, who would wait for pandas,
the core and MLflow's client (several seconds on a busy machine). Here a background
thread imports them as soon as the server starts listening, so the first visitor finds them
loaded. ``python -m pricebot_monitor.serve <app.py> [streamlit run options]``.
"""

from __future__ import annotations

import sys
import threading


def warm_up() -> None:
    """Import what the page needs, in the order the page needs it: data and charts first (the
    first chart needs no registry), then MLflow's client, then its model loader (a replay)."""
    import httpx  # noqa: F401
    import pandas  # noqa: F401

    import pricebot.monitoring  # noqa: F401
    import pricebot_monitor.charts  # noqa: F401
    from pricebot.labels import label_candles  # noqa: F401

    try:
        from pricebot.registry import Registry
        from pricebot.settings import get_settings

        Registry(get_settings().tracking_uri()).client  # noqa: B018 - creating it imports MLflow
        import mlflow.pyfunc  # noqa: F401
    except Exception:  # noqa: S110 - the page reports registry problems itself, when asked
        pass


def main(argv: list[str]) -> None:
    # Streamlit first: importing it configures plotly's theme, and plotly takes pandas from
    # sys.modules as it finds it; a pandas the warm-up thread is still importing is half a
    # module there, and Streamlit's import fails on it (AttributeError: pandas.Series).
    from streamlit.web import cli

    threading.Thread(target=warm_up, name="pricebot-warm-up", daemon=True).start()

    sys.argv = ["streamlit", "run", *argv]
    cli.main()


if __name__ == "__main__":
    main(sys.argv[1:])

"""Every error pricebot raises on purpose, one class per meaning, in one place.

Each message says what is wrong and what to do about it, so that an adapter can show it as it
is: the CLI prints it without a traceback, the service maps it to an HTTP status, a Lambda logs
it. :class:`PricebotError` is the base of all of them; an adapter that catches it knows the
message is meant for a person.

The built-in base each one also has (``ValueError``, ``LookupError``, ``RuntimeError``) says its
kind: bad input, something asked for that does not exist, or a part of the system that is not
there right now.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path


class PricebotError(Exception):
    """An expected failure whose message is written for the person who has to act on it."""


class UsageError(PricebotError, ValueError):
    """A command or call was given options that cannot work; the message says which."""


class MissingExtraError(PricebotError, ImportError):
    """An optional part of pricebot is not installed; the message names the extra to add."""


# --- the parts of the system ------------------------------------------------------------------


class DatabaseUnavailableError(PricebotError, RuntimeError):
    """The database cannot be reached; the message names the URL's host and what to do."""


class TrackingUnavailableError(PricebotError, RuntimeError):
    """The MLflow tracking server or store cannot be used; nothing has been done yet."""


class SecretUnavailableError(PricebotError, RuntimeError):
    """A secret is missing or unreadable; the message names the secret."""


class StoredRowsBreakRulesError(PricebotError, RuntimeError):
    """A schema upgrade would add rules that rows already stored break; the message counts them,
    names the first and says how to find them. The upgrade changed nothing."""


class UnexpectedEventError(PricebotError, ValueError):
    """An event a handler was not built for; nothing was done."""


class BootstrapError(PricebotError, RuntimeError):
    """Part of a deployment's bootstrap failed (history not loaded, a first training failed);
    the message lists each failure. What succeeded is kept, and the next run does the rest."""


class RoleConfigError(UsageError):
    """The deployment's description of the database login roles (``PRICEBOT_DB_ROLE_SECRETS``)
    or a role's secret is not what :mod:`pricebot.roles` expects; no role was changed."""


# --- data --------------------------------------------------------------------------------------


class UnknownSymbolError(PricebotError, LookupError):
    """No candles stored for the symbol; the message lists the symbols that have some."""


class NoFeaturesError(PricebotError, LookupError):
    """Candles exist but no features for the symbol or range: ``pricebot transform`` has not run
    (or has not caught up)."""


class UnknownFeatureSetError(PricebotError, ValueError):
    """A feature-set name this version of pricebot does not define."""


class FeatureInputError(PricebotError, ValueError):
    """Candles that cannot be turned into features; the message says what is wrong."""


class MissingReferenceError(PricebotError, LookupError):
    """A cross-asset feature set reads a reference coin whose candles were never stored."""


class TargetSpecError(PricebotError, ValueError):
    """A target spec that does not parse; the message says what is wrong and shows examples."""


class InsufficientDataError(PricebotError, ValueError):
    """Too little data for the requested folds; the message says how much is needed."""


class DegenerateTargetError(PricebotError, ValueError):
    """A classification target whose event never (or always) happens in a training set."""


class RangeError(PricebotError, ValueError):
    """A start/end pair that cannot be shown; the message says what to change."""


class MalformedKlineError(PricebotError, ValueError):
    """A kline row that breaks a candle rule (:mod:`pricebot.candle_rules`); ``rule`` names the
    rule, the message says which field and why."""

    def __init__(self, message: str, rule: str | None = None) -> None:
        super().__init__(message)
        self.rule = rule


class UnknownMarketError(PricebotError, ValueError):
    """A market name pricebot does not record candles under; the message lists the known ones."""


class MixedMarketsError(PricebotError, ValueError):
    """Candles of one symbol from a real and a simulated market (or two simulated ones); the
    message names both and the fix. Nothing of the refused write is stored."""


# --- archives (Binance Vision files) -----------------------------------------------------------


class ArchiveError(PricebotError, ValueError):
    """An archive that cannot be imported; the message names the file, the problem and the fix."""

    label = "failed"

    def __init__(self, path: Path | str, problem: str) -> None:
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path.name}: {problem}")


class ArchiveNameError(ArchiveError):
    """The file name is not a Binance Vision 1m kline name, or names another interval."""

    label = "bad-name"


class ChecksumMismatchError(ArchiveError):
    """The sibling .CHECKSUM does not match the file."""

    label = "bad-checksum"


class TruncatedArchiveError(ArchiveError):
    """The zip is unreadable or the CSV stops mid-row: the download was cut off."""

    label = "truncated"


class MalformedArchiveError(ArchiveError):
    """A row breaks the kline rules (not a number, prices out of order, ...)."""

    label = "malformed"


class OversizedArchiveError(ArchiveError):
    """The file holds more rows or bytes than the period its name gives can (a zip bomb, or not
    a Binance Vision file)."""

    label = "oversized"


class MislabelledArchiveError(ArchiveError):
    """The rows do not match the file name: another interval, or dates outside the named period."""

    label = "mislabelled"


class VisionDownloadError(PricebotError, RuntimeError):
    """A Binance Vision file could not be downloaded (the server kept failing or refused); what
    arrived is kept for the next attempt to resume."""


# --- the exchange (Binance REST) ---------------------------------------------------------------


class BinanceError(PricebotError, RuntimeError):
    """Base of the errors the exchange client raises."""


class RestrictedLocationError(BinanceError):
    """HTTP 451: Binance refuses to serve this location."""


class SymbolNotListedError(BinanceError):
    """The exchange does not list one or more symbols (Binance error -1121)."""

    def __init__(self, symbols: Sequence[str], base_url: str) -> None:
        self.symbols = list(symbols)
        super().__init__(
            f"Unknown symbol{'s' if len(self.symbols) > 1 else ''} {', '.join(self.symbols)} "
            f"at {base_url}: check the spelling (base and quote asset together, e.g. BTCUSDT) "
            "against GET /api/v3/exchangeInfo and fix --symbols or PRICEBOT_SYMBOLS."
        )


class MalformedPayloadError(BinanceError):
    """The exchange answered with something that is not the documented payload."""


class RateLimitBanError(BinanceError):
    """The exchange asks us to stay away longer than we are willing to wait in-process;
    ``until`` is when the ban ends (our clock), ``status`` 418 or 429."""

    def __init__(self, message: str, *, until: datetime, status: int | None = None) -> None:
        super().__init__(message)
        self.status, self.until = status, until


class RetriesExhaustedError(BinanceError):
    """A request kept failing with retryable errors until the retry budget was spent."""


class BinanceAPIError(BinanceError):
    """Any other refusal (4xx) with Binance's own code and message."""

    def __init__(self, message: str, status: int, code: int | None) -> None:
        self.status, self.code = status, code
        super().__init__(message)


# --- models, the registry and serving ----------------------------------------------------------


class AliasMoveError(PricebotError, LookupError):
    """An alias cannot be moved as asked (no such version, nothing to roll back to)."""


class UnknownModelError(PricebotError, LookupError):
    """A symbol or target that is not served (or not registered); the message lists what is."""


class NoChampionError(PricebotError, LookupError):
    """A symbol and target with no model to use yet; the message says why and ``fix`` holds
    the command (or check) that fixes it."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


class StaleFeaturesError(PricebotError, LookupError):
    """The newest feature row of a symbol is older than the service may serve (the hard limit):
    the pipeline has stopped feeding it. ``fix`` says what to run."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


class MarketMismatchError(PricebotError, LookupError):
    """A model trained on one market's candles (e.g. the simulated exchange) asked to predict
    from another's (real candles): refused, ``fix`` says how to get a model for it."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.fix = fix


class DamagedCacheEntryError(PricebotError, RuntimeError):
    """A model kept in the service's model cache (:mod:`pricebot.model_cache`) cannot be
    trusted: its manifest is missing or unreadable, its files differ from the manifest, or it
    does not load. It is never served; the message names the entry and what is wrong."""


class ServiceConfigError(PricebotError, ValueError):
    """The service is configured so that it must not start (e.g. an API key is required and
    none is set); the message names the variable to set."""


class ExplanationUnavailableError(PricebotError, ValueError):
    """The served model is of a kind whose answers cannot be decomposed into feature
    contributions (only tree ensembles and linear models can); the message names it."""


class ModelSignatureError(PricebotError, ValueError):
    """A model brought from elsewhere does not take the feature set's columns (or is not a
    model at all); the message names what differs and how to fit it right."""

"""Where the database URL comes from: the environment, Secrets Manager or SSM.

boto3 (~180 ms of imports) is loaded only when a secret has to be fetched. Powertools
Parameters caches the value for `max_age` seconds across warm calls, then fetches it again,
so a rotated password is picked up without a cold start. A copy restored from a SnapStart
snapshot drops a value cached longer ago than that (`forget_expired`, shared/snapstart.py).
"""

import time

from shared.settings import get_settings

SECRET_MAX_AGE_SECONDS = 300
_cached_since: float | None = None  # wall clock of the first read since the cache was emptied


class MissingDatabaseUrl(RuntimeError):
    pass


def database_url() -> str:
    settings = get_settings()
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    if settings.database_url_secret_arn:
        from aws_lambda_powertools.utilities import parameters

        return _cached(parameters.get_secret(settings.database_url_secret_arn, max_age=SECRET_MAX_AGE_SECONDS))
    if settings.database_url_parameter:
        from aws_lambda_powertools.utilities import parameters

        return _cached(
            parameters.get_parameter(settings.database_url_parameter, decrypt=True, max_age=SECRET_MAX_AGE_SECONDS)
        )
    raise MissingDatabaseUrl("Set DATABASE_URL, DATABASE_URL_SECRET_ARN or DATABASE_URL_PARAMETER")


def _cached(value: str) -> str:
    global _cached_since
    if _cached_since is None:
        _cached_since = time.time()
    return value


def forget_expired() -> bool:
    """Drops the cached values when the oldest is past its max age (after a SnapStart restore,
    which may come hours after the snapshot): the next use reads them again. Whether it did."""
    if _cached_since is None or time.time() - _cached_since < SECRET_MAX_AGE_SECONDS:
        return False
    reset()
    return True


def reset() -> None:
    """Drop cached secret values (tests, and `forget_expired`)."""
    import sys

    global _cached_since
    _cached_since = None
    module = sys.modules.get("aws_lambda_powertools.utilities.parameters")
    if module is not None:
        module.clear_caches()

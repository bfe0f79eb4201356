"""Where the database URL comes from: the environment, Secrets Manager or SSM.

boto3 (~180 ms of imports) is loaded only when a secret has to be fetched. Powertools
Parameters caches the value for `max_age` seconds across warm calls, then fetches it again,
so a rotated password is picked up without a cold start.
"""

from shared.settings import get_settings

SECRET_MAX_AGE_SECONDS = 300


class MissingDatabaseUrl(RuntimeError):
    pass


def database_url() -> str:
    settings = get_settings()
    if settings.database_url is not None:
        return settings.database_url.get_secret_value()
    if settings.database_url_secret_arn:
        from aws_lambda_powertools.utilities import parameters

        return parameters.get_secret(settings.database_url_secret_arn, max_age=SECRET_MAX_AGE_SECONDS)
    if settings.database_url_parameter:
        from aws_lambda_powertools.utilities import parameters

        return parameters.get_parameter(
            settings.database_url_parameter, decrypt=True, max_age=SECRET_MAX_AGE_SECONDS
        )
    raise MissingDatabaseUrl("Set DATABASE_URL, DATABASE_URL_SECRET_ARN or DATABASE_URL_PARAMETER")


def reset() -> None:
    """Drop cached secret values (tests)."""
    import sys

    module = sys.modules.get("aws_lambda_powertools.utilities.parameters")
    if module is not None:
        module.clear_caches()

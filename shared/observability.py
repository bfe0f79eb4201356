"""Powertools Logger (JSON, the request id as correlation id) and Metrics (EMF), one each.

Service name and namespace come from POWERTOOLS_SERVICE_NAME and
POWERTOOLS_METRICS_NAMESPACE (set in template.yaml; read by shared/settings.py); the
defaults serve local runs.
"""

from aws_lambda_powertools import Logger, Metrics

from shared.settings import ServiceNames

_names = ServiceNames()
SERVICE = _names.powertools_service_name

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=_names.powertools_metrics_namespace, service=SERVICE)

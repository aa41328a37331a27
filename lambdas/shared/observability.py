"""The one Logger, Tracer and Metrics (EMF) every handler shares."""

from aws_lambda_powertools import Logger, Metrics, Tracer

SERVICE = "nightshift"
NAMESPACE = "Nightshift"

logger = Logger(service=SERVICE)
tracer = Tracer(service=SERVICE)
metrics = Metrics(service=SERVICE, namespace=NAMESPACE)

"""CloudWatch metrics of a Lambda function, published after each invocation as embedded
metric format log lines (Powertools Metrics): no API call, no extra latency.

Business counts come from `Services.metrics` (CoinsPurchased, DiamondsWithdrawn, GiftsSent,
...); DynamoDB faults the request absorbed from `Dynamo.faults` (TransactionConflicts,
Throttles). ConflictRate is 100 for a request that met a conflict and 0 otherwise, so its
average is the percentage of requests that did (template.yaml alarms on it).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from infra.services import Services

CONFLICTS = frozenset({"TransactionConflict", "TransactionConflictException"})
THROTTLES = frozenset(
    {
        "ThrottlingException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
    }
)


class MetricsPublisher:
    def __init__(self, services: Services, namespace: str = "LiveCoins") -> None:
        self.services = services
        self.namespace = namespace
        self._faults: Counter[str] = Counter(services.dynamo.faults)
        self._metrics: Any = None

    def counts(self, rate: bool) -> dict[str, int]:
        """What happened since the last call: business counts and absorbed faults."""
        faults = self.services.dynamo.faults
        new = faults - self._faults
        self._faults = Counter(faults)
        counts = {k: v for k, v in self.services.metrics.items() if v}
        self.services.metrics.clear()
        conflicts = sum(new[k] for k in CONFLICTS)
        throttles = sum(new[k] for k in THROTTLES)
        if conflicts:
            counts["TransactionConflicts"] = conflicts
        if throttles:
            counts["Throttles"] = throttles
        if rate:
            counts["ConflictRate"] = 100 if conflicts else 0
        return counts

    def publish(self, rate: bool = True) -> None:
        counts = self.counts(rate)
        if not counts:
            return
        if self._metrics is None:  # after the first request, off the cold-start import path
            from aws_lambda_powertools.metrics import EphemeralMetrics

            self._metrics = EphemeralMetrics(namespace=self.namespace, service="livecoins")
        from aws_lambda_powertools.metrics import MetricUnit

        for name, value in counts.items():
            unit = MetricUnit.Percent if name == "ConflictRate" else MetricUnit.Count
            self._metrics.add_metric(name=name, unit=unit, value=value)
        self._metrics.flush_metrics()

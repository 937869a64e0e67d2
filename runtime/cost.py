"""Cost estimate of a stack: what it costs while idle, and per training hour of each job.

Figures come from the stack's config (which decides what is created: NAT gateway, interface
host, one alarm per job) and the price table ``runtime/prices.json`` (its source and date are in
the file). Storage is billed per GB stored and is reported as a rate, not a total.

Each job is priced on both training backends: EC2 (the EC2 rate, spot at ``spot_fraction``, gp3
root volume, public IPv4 without a NAT) and SageMaker (the ``ml.*`` rate of
``sagemaker_hourly``, managed spot at ``sagemaker_spot_fraction``, ML storage; SageMaker's own
network, no address billed). :func:`hosting_cost` prices a chat endpoint's instance.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stnlp.common.errors import UserError
from stnlp.common.names import ec2_instance_type, ml_instance_type
from stnlp.common.stackconfig import INTERFACE_ROOT_GB, StackConfig, uses_spot
from stnlp.plugins.spec import JobSpec

PRICES = Path(__file__).with_name("prices.json")


@dataclass(frozen=True)
class IdleItem:
    """One resource that costs money while no job runs."""

    item: str
    monthly: float


@dataclass(frozen=True)
class JobCost:
    """The cost of one hour of one training job."""

    job: str
    instance_type: str
    market: str  # "spot" or "on-demand"
    hourly: float
    backend: str = "ec2"


BACKEND_TABLES = {"ec2": "ec2_on_demand_hourly", "sagemaker": "sagemaker_hourly"}


def load_prices(path: Path = PRICES) -> dict[str, Any]:
    """The price table at ``path``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"price table {path} cannot be read: {exc}") from exc


def _instance_hourly(
    prices: Mapping[str, Any], instance_type: str, backend: str = "ec2"
) -> float:
    table = prices[BACKEND_TABLES[backend]]
    if instance_type not in table:
        raise UserError(
            f"price table has no price for instance type {instance_type!r} "
            f"(known: {', '.join(sorted(table))}); add it to {PRICES.name}"
        )
    return float(table[instance_type])


def idle_items(
    config: StackConfig, jobs: Sequence[JobSpec], prices: Mapping[str, Any]
) -> list[IdleItem]:
    """What the stack costs per month with no job running (storage per GB aside)."""
    hours = prices["hours_per_month"]
    ipv4 = prices["public_ipv4_hourly"] * hours
    items = []
    if config.nat_gateway:
        items.append(
            IdleItem(
                "NAT gateway + its public IPv4 address", prices["nat_gateway_hourly"] * hours + ipv4
            )
        )
    if config.interface_host:
        instance = _instance_hourly(prices, config.interface_instance_type) * hours
        disk = INTERFACE_ROOT_GB * prices["ebs_gp3_gb_month"]
        items.append(
            IdleItem(
                f"interface host {config.interface_instance_type} + {INTERFACE_ROOT_GB} GB gp3 + "
                "public IPv4",
                instance + disk + ipv4,
            )
        )
    billed_alarms = max(0, len(jobs) - prices["cloudwatch_free_alarms"])
    items.append(
        IdleItem(
            f"{len(jobs)} overrun alarm(s), {prices['cloudwatch_free_alarms']} free per account",
            billed_alarms * prices["cloudwatch_alarm_month"],
        )
    )
    items.append(
        IdleItem(
            "manifest parameter (standard tier while under 4 KB)",
            prices["ssm_standard_parameter_month"],
        )
    )
    return items + monitoring_items(prices)


def monitoring_items(prices: Mapping[str, Any]) -> list[IdleItem]:
    """The monitoring the stack creates (stnlp.infra.monitoring): a dashboard, a budget, the SNS
    topic and the run-end rule, each within the account's free tier while it is alone."""
    return [
        IdleItem(f"1 CloudWatch dashboard (${prices['cloudwatch_dashboard_month']:.2f}/month "
                 f"beyond the account's {prices['cloudwatch_free_dashboards']} free)", 0.0),
        IdleItem(f"1 AWS Budgets cost budget (the account's first {prices['budgets_free']} are "
                 f"free, then ${prices['budget_day']:.2f}/day)", 0.0),
        IdleItem(f"SNS topic + e-mail (the first {prices['sns_free_emails_month']} e-mails a "
                 "month are free) and the EventBridge rule on run ends (AWS events: free)", 0.0),
    ]  # fmt: skip


@dataclass(frozen=True)
class RunCost:
    """What one run of a job costs at most: its hourly rate for its maximum runtime."""

    job: str
    instance_type: str
    market: str
    hourly: float
    hours: float

    @property
    def total(self) -> float:
        """The cost of a run that lasts its whole maximum runtime."""
        return self.hourly * self.hours

    def line(self) -> str:
        """One line for the user, printed before a launch."""
        return (f"estimated cost: up to ${self.total:.2f} ({self.instance_type} {self.market} at "
                f"${self.hourly:.3f}/hour for the job's maximum {self.hours * 60:.0f} minutes)")


def hourly_cost(
    job: JobSpec, *, spot: bool, nat: bool, prices: Mapping[str, Any], backend: str = "ec2"
) -> JobCost:
    """One training hour of ``job`` on ``backend``: instance (spot or on-demand) and its disk,
    plus, on EC2 without a NAT, the public IPv4 address."""
    market = "spot" if spot else "on-demand"
    hours = prices["hours_per_month"]
    if backend == "sagemaker":
        instance_type = ml_instance_type(job.instance_type)
        hourly = _instance_hourly(prices, instance_type, backend)
        if spot:
            hourly *= prices["sagemaker_spot_fraction"]
        hourly += job.root_volume_gb * prices["sagemaker_storage_gb_month"] / hours
        return JobCost(job.name, instance_type, market, hourly, backend)
    instance_type = ec2_instance_type(job.instance_type)
    hourly = _instance_hourly(prices, instance_type)
    if spot:
        hourly *= prices["spot_fraction"]
    hourly += job.root_volume_gb * prices["ebs_gp3_gb_month"] / hours
    if not nat:  # instances in public subnets get a public address
        hourly += prices["public_ipv4_hourly"]
    return JobCost(job.name, instance_type, market, hourly)


def job_cost(
    config: StackConfig, job: JobSpec, prices: Mapping[str, Any], backend: str = "ec2"
) -> JobCost:
    """One training hour of ``job`` on the stack of ``config``."""
    return hourly_cost(job, spot=uses_spot(config, job), nat=config.nat_gateway, prices=prices,
                       backend=backend)


def run_cost(
    job: JobSpec, *, spot: bool, nat: bool, prices: Mapping[str, Any] | None = None,
    backend: str = "ec2", runs: int = 1,
) -> RunCost:  # fmt: skip
    """The most ``runs`` runs of ``job`` cost (a tuning's trials): the hourly rate times the
    maximum runtime of each."""
    hour = hourly_cost(job, spot=spot, nat=nat, prices=prices or load_prices(), backend=backend)
    return RunCost(job.name, hour.instance_type, hour.market, hour.hourly,
                   runs * job.max_runtime_minutes / 60)


def hosting_cost(instance_type: str, prices: Mapping[str, Any] | None = None) -> float:
    """The hourly cost of one SageMaker hosting instance of ``instance_type`` (``ml.*``)."""
    return _instance_hourly(prices or load_prices(), ml_instance_type(instance_type),
                            "sagemaker")


def estimate(
    config: StackConfig, jobs: Sequence[JobSpec], prices: Mapping[str, Any] | None = None,
    backends: Sequence[str] = ("ec2",),
) -> tuple[list[IdleItem], list[JobCost]]:  # fmt: skip
    """``(idle items, per-job training hour costs on each of backends)`` of a stack."""
    prices = prices or load_prices()
    return idle_items(config, jobs, prices), [
        job_cost(config, job, prices, backend) for job in jobs for backend in backends]

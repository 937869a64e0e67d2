"""Cost estimate of a stack: what it costs while idle, and per training hour of each job.

Figures come from the stack's config (which decides what is created: NAT gateway, interface
host, one alarm per job) and the price table ``runtime/prices.json`` (its source and date are in
the file). Storage is billed per GB stored and is reported as a rate, not a total.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stnlp.common.errors import UserError
from stnlp.common.names import ec2_instance_type
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


def load_prices(path: Path = PRICES) -> dict[str, Any]:
    """The price table at ``path``."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"price table {path} cannot be read: {exc}") from exc


def _instance_hourly(prices: Mapping[str, Any], instance_type: str) -> float:
    table = prices["ec2_on_demand_hourly"]
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
    return items


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
    job: JobSpec, *, spot: bool, nat: bool, prices: Mapping[str, Any]
) -> JobCost:
    """One training hour of ``job``: instance (spot or on-demand), root volume, public IPv4."""
    instance_type = ec2_instance_type(job.instance_type)
    hourly = _instance_hourly(prices, instance_type)
    if spot:
        hourly *= prices["spot_fraction"]
    hourly += job.root_volume_gb * prices["ebs_gp3_gb_month"] / prices["hours_per_month"]
    if not nat:  # instances in public subnets get a public address
        hourly += prices["public_ipv4_hourly"]
    return JobCost(job.name, instance_type, "spot" if spot else "on-demand", hourly)


def job_cost(config: StackConfig, job: JobSpec, prices: Mapping[str, Any]) -> JobCost:
    """One training hour of ``job`` on the stack of ``config``."""
    return hourly_cost(job, spot=uses_spot(config, job), nat=config.nat_gateway, prices=prices)


def run_cost(
    job: JobSpec, *, spot: bool, nat: bool, prices: Mapping[str, Any] | None = None
) -> RunCost:
    """The most one run of ``job`` costs: its hourly rate times its maximum runtime."""
    hour = hourly_cost(job, spot=spot, nat=nat, prices=prices or load_prices())
    return RunCost(job.name, hour.instance_type, hour.market, hour.hourly,
                   job.max_runtime_minutes / 60)


def estimate(
    config: StackConfig, jobs: Sequence[JobSpec], prices: Mapping[str, Any] | None = None
) -> tuple[list[IdleItem], list[JobCost]]:
    """``(idle items, per-job training hour costs)`` of a stack."""
    prices = prices or load_prices()
    return idle_items(config, jobs, prices), [job_cost(config, job, prices) for job in jobs]

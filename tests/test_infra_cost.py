"""`stnlp cost`: $0 per idle hour for the default stack, and a figure per training hour."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from stnlp.common.errors import UserError
from stnlp.common.stackconfig import config_from_stack_file
from stnlp.plugins.spec import JobSpec
from stnlp.runtime.cli import main
from stnlp.runtime.cost import estimate, load_prices
from tests.extension import install_example_plugin

ROOT = Path(__file__).resolve().parent.parent
JOB = JobSpec(
    name="example-linefit",
    component="c",
    entrypoint="m:f",
    output_model="m",
    instance_type="g5.xlarge",
    root_volume_gb=100,
)


def test_default_stack_costs_nothing_while_idle():
    config = config_from_stack_file(ROOT / "Pulumi.dev.yaml")
    idle, jobs = estimate(config, [JOB])
    assert sum(item.monthly for item in idle) == 0
    [job] = jobs
    # g5.xlarge at $1.006/h on demand, spot at 40%, 100 GB gp3 at $0.08/GB-month over 730 h,
    # one public IPv4 address at $0.005/h.
    assert job.market == "spot"
    assert job.hourly == pytest.approx(1.006 * 0.4 + 100 * 0.08 / 730 + 0.005)


def test_prod_pays_for_its_interface_host_and_on_demand_training():
    config = config_from_stack_file(ROOT / "Pulumi.prod.yaml")
    idle, [job] = estimate(config, [JOB])
    host = [item for item in idle if item.item.startswith("interface host")]
    assert host[0].monthly == pytest.approx((0.0208 + 0.005) * 730 + 20 * 0.08)
    assert job.market == "on-demand"
    assert job.hourly == pytest.approx(1.006 + 100 * 0.08 / 730 + 0.005)


def test_nat_gateway_and_alarms_beyond_the_free_tier_cost_money():
    config = replace(config_from_stack_file(ROOT / "Pulumi.dev.yaml"), nat_gateway=True)
    jobs = [replace(JOB, name=f"job-{i}") for i in range(12)]
    idle, costs = estimate(config, jobs)
    monthly = {item.item.split(" ")[0]: item.monthly for item in idle}
    assert monthly["NAT"] == pytest.approx((0.045 + 0.005) * 730)
    assert monthly["12"] == pytest.approx(2 * 0.10)
    assert costs[0].hourly == pytest.approx(1.006 * 0.4 + 100 * 0.08 / 730)  # no public IPv4


def test_price_table_names_its_source_and_date_and_prices_every_gpu_type():
    from stnlp.plugins.spec import GPU_INSTANCE_GPUS

    prices = load_prices()
    assert prices["source"] and prices["recorded"]
    ec2_types = {t.removeprefix("ml.") for t in GPU_INSTANCE_GPUS}
    assert ec2_types <= set(prices["ec2_on_demand_hourly"])


def test_unknown_instance_type_is_named():
    config = config_from_stack_file(ROOT / "Pulumi.dev.yaml")
    with pytest.raises(UserError, match="'x9.huge'"):
        estimate(config, [replace(JOB, instance_type="x9.huge", gpu_count=0)])


def test_cost_command_prints_idle_and_per_job_figures(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(install_example_plugin(tmp_path / "site")))
    monkeypatch.setenv("COLUMNS", "200")
    main(["cost", "dev", "--dir", str(ROOT)])
    out = capsys.readouterr().out
    assert "idle: $0.00/month = $0.0000/hour" in out
    line = next(line for line in out.splitlines() if "example-linefit" in line)
    assert "g5.xlarge" in line and "spot" in line and "0.418" in line


def test_cost_command_names_a_missing_stack_file(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["cost", "staging", "--dir", str(tmp_path)])
    assert exit_info.value.code == 2
    assert (
        f"stack file {tmp_path / 'Pulumi.staging.yaml'} does not exist" in capsys.readouterr().err
    )


def test_sagemaker_runs_are_priced_at_ml_rates_not_ec2_rates():
    from stnlp.runtime.cost import hosting_cost, run_cost

    prices = load_prices()
    assert {f"ml.{t}" for t in prices["ec2_on_demand_hourly"]} - {"ml.t3.micro", "ml.t3.small",
                                                                 "ml.t3.large"} \
        <= set(prices["sagemaker_hourly"])  # every EC2 type a job may use has its ml.* rate
    # ml.g5.xlarge at $1.408/h on demand, managed spot at 30%, 100 GB ML storage at $0.14
    sagemaker = run_cost(JOB, spot=True, nat=False, prices=prices, backend="sagemaker")
    assert sagemaker.instance_type == "ml.g5.xlarge"
    assert sagemaker.hourly == pytest.approx(1.408 * 0.3 + 100 * 0.14 / 730)
    ec2 = run_cost(JOB, spot=True, nat=False, prices=prices)
    assert ec2.hourly == pytest.approx(1.006 * 0.4 + 100 * 0.08 / 730 + 0.005)
    tuning = run_cost(JOB, spot=False, nat=False, prices=prices, backend="sagemaker", runs=3)
    assert tuning.total == pytest.approx(3 * (1.408 + 100 * 0.14 / 730) * JOB.max_runtime_minutes
                                         / 60)
    assert hosting_cost("g5.2xlarge", prices) == 1.515

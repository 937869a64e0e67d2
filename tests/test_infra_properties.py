"""Every policy rule holds for generated stack configs and plugin sets."""

from __future__ import annotations

import ipaddress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stnlp.common.settings import Settings
from stnlp.common.stackconfig import LOG_RETENTION_DAYS
from stnlp.infra.policies import check_all
from stnlp.infra.stack import build_stack
from stnlp.plugins import hookimpl
from stnlp.plugins.manager import DEFAULT_PLUGINS, build_plugin_manager
from stnlp.plugins.spec import GPU_INSTANCE_GPUS, JobSpec
from tests.infra_mocks import project_config, run_program


class JobsPlugin:
    """A plugin contributing the given job specs."""

    def __init__(self, jobs):
        self.jobs = jobs

    @hookimpl
    def stnlp_training_jobs(self, settings):
        """The generated jobs."""
        return list(self.jobs)


cidrs = st.builds(
    lambda ip, prefix: str(
        ipaddress.ip_network(f"{ipaddress.IPv4Address(ip)}/{prefix}", strict=False)
    ),
    st.integers(0, 2**32 - 1),
    st.integers(8, 32),
)


@st.composite
def stack_configs(draw):
    host = draw(st.booleans())
    values = {
        "natGateway": draw(st.booleans()),
        "flowLogs": draw(st.booleans()),
        "spot": draw(st.booleans()),
        "logRetentionDays": draw(st.sampled_from(LOG_RETENTION_DAYS)),
        "vpcCidr": draw(st.sampled_from(["10.0.0.0/16", "172.20.0.0/20", "192.168.8.0/24"])),
        "interfaceHost": host,
        "interfaceCidrs": draw(st.lists(cidrs, min_size=1 if host else 0, max_size=3)),
    }
    stack = draw(st.from_regex(r"[a-z][a-z0-9-]{0,11}", fullmatch=True))
    region = draw(st.sampled_from(["us-east-1", "eu-west-1", "ap-southeast-2"]))
    return stack, region, values


job_specs = st.builds(
    lambda name, instance, spot, minutes, disk: JobSpec(
        name=name,
        component="gen",
        entrypoint="gen.train:run",
        output_model="gen-model",
        instance_type=instance,
        gpu_count=1,
        spot=spot,
        max_runtime_minutes=minutes,
        root_volume_gb=disk,
    ),
    st.from_regex(r"[a-z][a-z0-9-]{1,20}", fullmatch=True),
    st.sampled_from(sorted(GPU_INSTANCE_GPUS)),
    st.booleans(),
    st.integers(1, 3000),
    st.integers(8, 2000),
)
plugin_sets = st.lists(st.lists(job_specs, max_size=3), max_size=3).filter(
    lambda plugins: (
        len({j.name for jobs in plugins for j in jobs}) == sum(len(jobs) for jobs in plugins)
    )
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack_configs(), plugin_sets)
def test_every_rule_holds_for_generated_stacks_and_plugins(stack_config, plugins):
    stack, region, values = stack_config
    disabled = tuple(name for name, _ in DEFAULT_PLUGINS)
    registry = build_plugin_manager(
        Settings(disabled_plugins=disabled),
        extra=tuple((f"gen{i}", JobsPlugin(jobs)) for i, jobs in enumerate(plugins)),
    )
    built = run_program(lambda: build_stack(registry), stack, project_config(values, region))
    assert check_all(built.resources, stack) == {}
    jobs = {job.name: job for group in plugins for job in group}
    templates = {r.props["name"]: r.props for r in built.of(":LaunchTemplate")}
    assert set(templates) == {f"stnlp-{stack}-{name}" for name in jobs}
    assert set(built.manifest["log_groups"]) == set(jobs)
    assert len(built.of(":MetricAlarm")) == len(jobs)
    for name, job in jobs.items():
        props = templates[f"stnlp-{stack}-{name}"]
        assert props["instanceType"] == job.instance_type.removeprefix("ml.")
        spot = "instanceMarketOptions" in props
        assert spot == (job.spot and values["spot"])
    assert bool(built.of(":NatGateway")) == values["natGateway"]
    assert bool(built.of(":Instance")) == values["interfaceHost"]

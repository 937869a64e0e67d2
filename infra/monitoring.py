"""Monitoring: a CloudWatch dashboard, an AWS Budgets alert and run-end messages, per stack.

Everything notifies the stack's SNS topic ``stnlp-<stack>-alarms`` (infra/compute.py; its
``alarmEmail`` subscription): the overrun alarms, an EventBridge rule on every SageMaker
training and processing job of the stack ending (``Completed``, ``Failed``, ``Stopped``; the
message names the job, its status and its failure reason) and the monthly cost budget (80% of
``monthlyBudget`` actual, 100% forecast). The topic's policy lets exactly EventBridge (from the
rule), Budgets and CloudWatch publish.

The dashboard ``stnlp-<stack>`` shows the runs' elapsed minutes per job (``STNLP``), the
stack's SageMaker job ends and failures (the rules' matched events), and the account's
estimated charges (``AWS/Billing``, us-east-1 only). Idle, all of it is inside the free tiers
(3 dashboards, 2 budgets, 1,000 e-mails a month, AWS-service events); `stnlp cost` lists it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from stnlp.common.names import METRIC_ELAPSED, METRIC_NAMESPACE, TAG_STACK
from stnlp.common.stackconfig import StackConfig

JOB_STATES = {"SageMaker Training Job State Change": "TrainingJobStatus",
              "SageMaker Processing Job State Change": "ProcessingJobStatus"}  # fmt: skip
ENDED = ["Completed", "Failed", "Stopped"]
FAILED = ["Failed", "Stopped"]


def job_end_pattern(stack: str, statuses: Sequence[str]) -> dict[str, Any]:
    """The EventBridge pattern of this stack's SageMaker jobs (``stnlp-...`` training runs,
    ``tune-...`` trials, ``stnlp-batch-...`` shards) ending in one of ``statuses``."""
    return {
        "source": ["aws.sagemaker"],
        "detail-type": list(JOB_STATES),
        "detail": {"$or": [{field: list(statuses), "Tags": {TAG_STACK: [stack]}}
                           for field in JOB_STATES.values()]},
    }  # fmt: skip


def dashboard_body(stack: str, region: str, jobs: Sequence[str], rules: Sequence[str]) -> str:
    """The dashboard's JSON: elapsed minutes per job, job ends and failures, charges."""
    elapsed = [[METRIC_NAMESPACE, METRIC_ELAPSED, "Stack", stack, "Job", job] for job in jobs]
    events = [["AWS/Events", "MatchedEvents", "RuleName", rule] for rule in rules]
    widgets = [
        {"type": "metric", "x": 0, "y": 0, "width": 12, "height": 6, "properties": {
            "title": "run minutes (max elapsed per job)", "region": region, "stat": "Maximum",
            "period": 300, "view": "timeSeries",
            "metrics": elapsed or [[METRIC_NAMESPACE, METRIC_ELAPSED]]}},
        {"type": "metric", "x": 12, "y": 0, "width": 12, "height": 6, "properties": {
            "title": "SageMaker job ends and failures", "region": region, "stat": "Sum",
            "period": 3600, "view": "timeSeries", "metrics": events}},
        {"type": "metric", "x": 0, "y": 6, "width": 24, "height": 6, "properties": {
            "title": "estimated charges (account, USD)", "region": "us-east-1",
            "stat": "Maximum", "period": 21600, "view": "timeSeries",
            "metrics": [["AWS/Billing", "EstimatedCharges", "Currency", "USD"]]}},
    ]  # fmt: skip
    return json.dumps({"widgets": widgets}, sort_keys=True)


def topic_policy(topic_arn: str, account: str, rule_arns: Sequence[str]) -> str:
    """Who may publish to the stack's topic: its own rules, Budgets and CloudWatch alarms."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "RunEndRules", "Effect": "Allow", "Principal": {"Service": "events.amazonaws.com"},
         "Action": "sns:Publish", "Resource": topic_arn,
         "Condition": {"ArnEquals": {"aws:SourceArn": list(rule_arns)}}},
        {"Sid": "Budgets", "Effect": "Allow", "Principal": {"Service": "budgets.amazonaws.com"},
         "Action": "sns:Publish", "Resource": topic_arn,
         "Condition": {"StringEquals": {"aws:SourceAccount": account}}},
        {"Sid": "Alarms", "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": "sns:Publish", "Resource": topic_arn,
         "Condition": {"StringEquals": {"aws:SourceAccount": account}}},
    ]}, indent=1)  # fmt: skip


def budget_notifications(config: StackConfig) -> list[dict[str, Any]]:
    """The budget's two notifications (actual 80%, forecast 100%), to the topic and e-mail."""
    return [{"comparison_operator": "GREATER_THAN", "threshold": threshold,
             "threshold_type": "PERCENTAGE", "notification_type": kind,
             "subscriber_email_addresses": [config.alarm_email] if config.alarm_email else []}
            for kind, threshold in (("ACTUAL", 80), ("FORECASTED", 100))]  # fmt: skip


class Monitoring(pulumi.ComponentResource):
    """The dashboard, the budget, the run-end rules and the topic policy of one stack."""

    def __init__(self, name: str, config: StackConfig, account_id: pulumi.Input[str],
                 topic: aws.sns.Topic, jobs: Sequence[str],
                 opts: pulumi.ResourceOptions | None = None):  # fmt: skip
        super().__init__("stnlp:infra:Monitoring", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        stack = config.stack
        ended = aws.cloudwatch.EventRule(
            "runs-ended", name=f"stnlp-{stack}-runs-ended",
            description="A SageMaker job of the stack ended", opts=child,
            event_pattern=json.dumps(job_end_pattern(stack, ENDED)))  # fmt: skip
        failed = aws.cloudwatch.EventRule(
            "runs-failed", name=f"stnlp-{stack}-runs-failed",
            description="A SageMaker job of the stack failed or was stopped (counted)",
            event_pattern=json.dumps(job_end_pattern(stack, FAILED)), opts=child)  # fmt: skip
        aws.cloudwatch.EventTarget(
            "runs-ended-topic", rule=ended.name, arn=topic.arn, opts=child,
            input_transformer={
                "input_paths": {"type": "$.detail-type", "training": "$.detail.TrainingJobName",
                                "processing": "$.detail.ProcessingJobName",
                                "trained": "$.detail.TrainingJobStatus",
                                "processed": "$.detail.ProcessingJobStatus",
                                "reason": "$.detail.FailureReason"},
                "input_template": f'"stnlp {stack}: <type> <training><processing> ended '
                                  '<trained><processed> <reason>"'})  # fmt: skip
        aws.sns.TopicPolicy(
            "alarms-policy", arn=topic.arn, opts=child,
            policy=pulumi.Output.all(topic.arn, account_id, ended.arn, failed.arn).apply(
                lambda v: topic_policy(v[0], v[1], v[2:])))  # fmt: skip
        aws.budgets.Budget(
            "budget", name=f"stnlp-{stack}-monthly", budget_type="COST", time_unit="MONTHLY",
            limit_amount=str(config.monthly_budget), limit_unit="USD", opts=child,
            cost_filters=[{"name": "TagKeyValue", "values": [f"user:{TAG_STACK}${stack}"]}],
            notifications=[{**n, "subscriber_sns_topic_arns": [topic.arn]}
                           for n in budget_notifications(config)])  # fmt: skip
        self.dashboard = aws.cloudwatch.Dashboard(
            "dashboard", dashboard_name=f"stnlp-{stack}", opts=child,
            dashboard_body=pulumi.Output.all(ended.name, failed.name).apply(
                lambda names: dashboard_body(stack, config.region, jobs, names)))  # fmt: skip
        self.register_outputs({"dashboard": self.dashboard.dashboard_name})

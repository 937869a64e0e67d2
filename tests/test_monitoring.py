"""Monitoring: the Pulumi program's dashboard, budget, run-end rules and topic policy, built
under mocks; the same documents accepted by moto's CloudWatch, Budgets and EventBridge, and the
run-end pattern matched against the event AWS documents for a SageMaker job ending."""

from __future__ import annotations

import json

import pytest

from stnlp.common.names import TAG_STACK
from stnlp.infra.monitoring import ENDED, FAILED, dashboard_body, job_end_pattern
from stnlp.infra.stack import build_stack
from stnlp.runtime.store import s3_client
from tests.infra_mocks import ACCOUNT, example_registry, project_config, run_program


@pytest.fixture(scope="module")
def built():
    registry = example_registry()
    return run_program(lambda: build_stack(registry), "dev",
                       project_config({"alarmEmail": "ops@example.com", "monthlyBudget": 25}))


def _one(built, typ):
    (found,) = built.of(typ)
    return found


def test_the_stack_has_a_dashboard_a_budget_and_run_end_messages(built):
    dashboard = _one(built, ":Dashboard")
    assert dashboard.props["dashboardName"] == "stnlp-dev"
    widgets = json.loads(dashboard.props["dashboardBody"])["widgets"]
    metrics = [m for w in widgets for m in w["properties"]["metrics"]]
    assert ["STNLP", "ElapsedMinutes", "Stack", "dev", "Job", "example-linefit"] in metrics
    assert ["AWS/Billing", "EstimatedCharges", "Currency", "USD"] in metrics
    budget = _one(built, ":Budget")
    assert (budget.props["limitAmount"], budget.props["timeUnit"]) == ("25", "MONTHLY")
    topic = _one(built, ":Topic")
    for notification in budget.props["notifications"]:
        assert notification["subscriberEmailAddresses"] == ["ops@example.com"]
        assert len(notification["subscriberSnsTopicArns"]) == 1
    (target,) = built.of(":EventTarget")
    assert target.props["rule"] == "stnlp-dev-runs-ended"
    policy = json.loads(_one(built, ":TopicPolicy").props["policy"])
    assert {s["Principal"]["Service"] for s in policy["Statement"]} == {
        "events.amazonaws.com", "budgets.amazonaws.com", "cloudwatch.amazonaws.com"}
    assert all(s["Action"] == "sns:Publish" for s in policy["Statement"])
    (email,) = built.of(":TopicSubscription")
    assert email.props["endpoint"] == "ops@example.com" and topic


def _sagemaker_event(stack: str, status: str) -> str:
    """A "SageMaker Training Job State Change" event, in the shape AWS documents."""
    return json.dumps({
        "version": "0", "id": "0b5f1e9e-0000-0000-0000-000000000000",
        "detail-type": "SageMaker Training Job State Change", "source": "aws.sagemaker",
        "account": ACCOUNT, "time": "2025-01-01T00:00:00Z", "region": "us-east-1",
        "resources": [f"arn:aws:sagemaker:us-east-1:{ACCOUNT}:training-job/stnlp-r1"],
        "detail": {"TrainingJobName": "stnlp-r1", "TrainingJobStatus": status,
                   "SecondaryStatus": status, "FailureReason": "CUDA out of memory",
                   "Tags": {TAG_STACK: stack, "stnlp:job": "example-linefit"}}})


def _matches(pattern: dict, event: str) -> bool:
    """EventBridge's matching of ``pattern`` (``$or`` included) against ``event``: moto's
    server answers TestEventPattern with nothing, so its rule engine is asked directly."""
    from moto.events.models import EventPattern

    return EventPattern(json.dumps(pattern), pattern).matches_event(json.loads(event))


def test_moto_accepts_the_documents_and_the_rules_match_only_this_stacks_ends(moto_settings):
    events = s3_client(moto_settings, "events")
    ended, failed = job_end_pattern("dev", ENDED), job_end_pattern("dev", FAILED)
    for status, ends, fails in (("Completed", True, False), ("Failed", True, True),
                                ("Stopped", True, True), ("InProgress", False, False)):
        event = _sagemaker_event("dev", status)
        assert _matches(ended, event) is ends and _matches(failed, event) is fails
    assert not _matches(ended, _sagemaker_event("prod", "Failed"))
    events.put_rule(Name="stnlp-dev-runs-ended", EventPattern=json.dumps(ended))
    cloudwatch = s3_client(moto_settings, "cloudwatch")
    body = dashboard_body("dev", "us-east-1", ["example-linefit"], ["a", "b"])
    cloudwatch.put_dashboard(DashboardName="stnlp-dev", DashboardBody=body)
    assert json.loads(cloudwatch.get_dashboard(DashboardName="stnlp-dev")["DashboardBody"]) == \
        json.loads(body)
    budgets = s3_client(moto_settings, "budgets")
    budgets.create_budget(AccountId=ACCOUNT, Budget={
        "BudgetName": "stnlp-dev-monthly", "BudgetType": "COST", "TimeUnit": "MONTHLY",
        "BudgetLimit": {"Amount": "25", "Unit": "USD"},
        "CostFilters": {"TagKeyValue": [f"user:{TAG_STACK}$dev"]}},
        NotificationsWithSubscribers=[{"Notification": {
            "NotificationType": "ACTUAL", "ComparisonOperator": "GREATER_THAN",
            "Threshold": 80, "ThresholdType": "PERCENTAGE"},
            "Subscribers": [{"SubscriptionType": "EMAIL", "Address": "ops@example.com"}]}])
    described = budgets.describe_budget(AccountId=ACCOUNT, BudgetName="stnlp-dev-monthly")
    assert described["Budget"]["BudgetLimit"]["Amount"] in ("25", "25.0")

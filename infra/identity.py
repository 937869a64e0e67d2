"""Identity: least-privilege roles for training instances, SageMaker and the interface host.

Data scope (training instances and SageMaker alike):

- datasets bucket: read.
- models bucket: read everything (base models, earlier versions, shipped packages); write only
  under ``models/`` (new versions and the ``latest.json`` pointers) and ``hub/`` (the stack's
  cache of hub models). The bucket is per stack.
- results bucket (per stack): list; read, write and delete only under ``<stack>/`` (runs,
  checkpoints, locks). Writes carry object tags (lifecycle expiry), so ``s3:PutObjectTagging``
  goes with every ``s3:PutObject``: AWS requires both for a PutObject with a tag set.

Training instances may also write their job's log groups, read the stack manifest (and the
hub token's SecureString when the config names one) and put the ``STNLP`` elapsed-time metric.
They may terminate nothing: the instance ends by shutting down (shutdown behaviour
``terminate``). The interface host role reads models, datasets, the manifest and its auth
parameter. The launcher policy (``stnlp-<stack>-<region>-launcher``, to attach to the users who
run `stnlp`) holds what the CLI does: launch from the stack's templates, pass the training and
SageMaker roles, read and write the stack's data, terminate the stack's instances.
No statement allows ``*`` actions on ``*`` resources.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pulumi
import pulumi_aws as aws

from stnlp.common.names import (
    METRIC_NAMESPACE,
    TAG_ROLE,
    TAG_STACK,
    iam_name,
    interface_auth_parameter,
    log_group_name,
    manifest_parameter,
)
from stnlp.common.stackconfig import StackConfig

READ_OBJECT = ["s3:GetObject", "s3:GetObjectVersion"]
WRITE_OBJECT = ["s3:PutObject", "s3:PutObjectTagging", "s3:AbortMultipartUpload"]


def _bucket(name: str) -> str:
    return f"arn:aws:s3:::{name}"


def policy_document(statements: Sequence[Mapping[str, Any]]) -> str:
    """An IAM policy document (version 2012-10-17) holding ``statements``."""
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)}, indent=1)


def assume_role_policy(service: str) -> str:
    """Trust policy letting one AWS service principal assume the role."""
    return policy_document(
        [
            {
                "Effect": "Allow",
                "Action": "sts:AssumeRole",
                "Principal": {"Service": service},
            }
        ]
    )


def read_statements(datasets: str, models: str, *objects: str) -> list[dict[str, Any]]:
    """List the datasets and models buckets (ARNs); read their objects and ``objects``."""
    return [
        {
            "Sid": "ListData",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": [datasets, models],
        },
        {
            "Sid": "ReadData",
            "Effect": "Allow",
            "Action": READ_OBJECT,
            "Resource": [f"{datasets}/*", f"{models}/*", *objects],
        },
    ]


def data_statements(stack: str, buckets: Mapping[str, str]) -> list[dict[str, Any]]:
    """The data scope shared by the training role and the SageMaker role."""
    datasets, models, results = (_bucket(buckets[k]) for k in ("datasets", "models", "results"))
    return [
        *read_statements(datasets, models, f"{results}/{stack}/*"),
        {
            # The stack's own bucket: listing it also makes a missing key a 404, not a 403.
            "Sid": "ListStackResults",
            "Effect": "Allow",
            "Action": "s3:ListBucket",
            "Resource": results,
        },
        {
            "Sid": "PublishModels",
            "Effect": "Allow",
            "Action": WRITE_OBJECT,
            "Resource": [f"{models}/models/*", f"{models}/hub/*"],
        },
        {
            "Sid": "WriteStackResults",
            "Effect": "Allow",
            "Action": [*WRITE_OBJECT, "s3:DeleteObject"],
            "Resource": f"{results}/{stack}/*",
        },
    ]


def training_statements(
    config: StackConfig, account: str, buckets: Mapping[str, str], jobs: Sequence[str]
) -> list[dict[str, Any]]:
    """Everything a training instance of this stack may do."""
    region, stack = config.region, config.stack
    logs = [
        f"arn:aws:logs:{region}:{account}:log-group:{log_group_name(stack, job)}:*" for job in jobs
    ]
    statements = data_statements(stack, buckets)
    if logs:
        statements.append(
            {
                "Sid": "WriteJobLogs",
                "Effect": "Allow",
                "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                "Resource": logs,
            }
        )
    return [
        *statements,
        read_parameters_statement(config, account),
        publish_run_ends_statement(config, account),
        {
            "Sid": "PutElapsedMetric",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": METRIC_NAMESPACE}},
        },
    ]


def topic_arn(config: StackConfig, account: str) -> str:
    """The stack's SNS topic (infra/compute.py): alarms, budget and run-end messages."""
    return f"arn:aws:sns:{config.region}:{account}:stnlp-{config.stack}-alarms"


def publish_run_ends_statement(config: StackConfig, account: str) -> dict[str, Any]:
    """Publishing run-end messages (stnlp.runtime.notify) to the stack's topic, and only that."""
    return {"Sid": "PublishRunEnds", "Effect": "Allow", "Action": "sns:Publish",
            "Resource": topic_arn(config, account)}  # fmt: skip


def read_parameters_statement(config: StackConfig, account: str) -> dict[str, Any]:
    """What a training machine (EC2 or SageMaker) reads in SSM: the stack manifest and, when the
    config names one, the hub token's SecureString."""
    names = [manifest_parameter(config.stack)]
    if config.hub_token_parameter:
        names.append(config.hub_token_parameter)
    return {
        "Sid": "ReadManifest",
        "Effect": "Allow",
        "Action": "ssm:GetParameter",
        "Resource": [f"arn:aws:ssm:{config.region}:{account}:parameter{name}" for name in names],
    }


def launcher_statements(
    config: StackConfig, account: str, buckets: Mapping[str, str]
) -> list[dict[str, Any]]:
    """What a user running `stnlp` against this stack needs (attach the launcher policy)."""
    region, stack = config.region, config.stack
    datasets, models, results = (_bucket(buckets[k]) for k in ("datasets", "models", "results"))
    ec2 = f"arn:aws:ec2:{region}:{account}"
    role = f"arn:aws:iam::{account}:role"
    return [
        {"Sid": "ReadManifest", "Effect": "Allow", "Action": "ssm:GetParameter",
         "Resource": f"arn:aws:ssm:{region}:{account}:parameter{manifest_parameter(stack)}"},
        {"Sid": "ListBuckets", "Effect": "Allow", "Action": "s3:ListBucket",
         "Resource": [datasets, models, results]},
        {"Sid": "ReadData", "Effect": "Allow", "Action": READ_OBJECT,
         "Resource": [f"{datasets}/*", f"{models}/*", f"{results}/{stack}/*"]},
        {"Sid": "WriteData", "Effect": "Allow", "Action": WRITE_OBJECT,
         "Resource": [f"{datasets}/raw/*", f"{datasets}/processed/*", f"{models}/packages/*",
                      f"{models}/models/*"]},
        {"Sid": "WriteStackResults", "Effect": "Allow",
         "Action": [*WRITE_OBJECT, "s3:DeleteObject"], "Resource": f"{results}/{stack}/*"},
        {"Sid": "LaunchFromTemplates", "Effect": "Allow", "Action": "ec2:RunInstances",
         "Resource": [f"{ec2}:launch-template/*", f"{ec2}:instance/*", f"{ec2}:volume/*",
                      f"{ec2}:network-interface/*", f"{ec2}:subnet/*",
                      f"{ec2}:security-group/*", f"arn:aws:ec2:{region}::image/*"]},
        {"Sid": "TagLaunches", "Effect": "Allow", "Action": "ec2:CreateTags",
         "Resource": [f"{ec2}:instance/*", f"{ec2}:volume/*"],
         "Condition": {"StringEquals": {"ec2:CreateAction": "RunInstances"}}},
        {"Sid": "TerminateStackInstances", "Effect": "Allow",
         "Action": "ec2:TerminateInstances", "Resource": f"{ec2}:instance/*",
         "Condition": {"StringEquals": {f"aws:ResourceTag/{TAG_STACK}": stack}}},
        {"Sid": "Describe", "Effect": "Allow",
         "Action": ["ec2:DescribeInstances", "ec2:DescribeSubnets", "ec2:DescribeInstanceTypes",
                    "ec2:DescribeInstanceTypeOfferings", "servicequotas:GetServiceQuota"],
         "Resource": "*"},
        {"Sid": "PassTrainingRole", "Effect": "Allow", "Action": "iam:PassRole",
         "Resource": f"{role}/{iam_name(stack, region, 'training')}",
         "Condition": {"StringEquals": {"iam:PassedToService": "ec2.amazonaws.com"}}},
        {"Sid": "PassSageMakerRole", "Effect": "Allow", "Action": "iam:PassRole",
         "Resource": f"{role}/{iam_name(stack, region, 'sagemaker')}",
         "Condition": {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}},
        {"Sid": "SageMakerJobs", "Effect": "Allow",
         "Action": ["sagemaker:CreateTrainingJob", "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob", "sagemaker:AddTags"],
         "Resource": [f"arn:aws:sagemaker:{region}:{account}:training-job/stnlp-*",
                      f"arn:aws:sagemaker:{region}:{account}:training-job/tune-*"]},
        {"Sid": "SageMakerBatchShards", "Effect": "Allow",
         "Action": ["sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob",
                    "sagemaker:StopProcessingJob", "sagemaker:AddTags"],
         "Resource": f"arn:aws:sagemaker:{region}:{account}:processing-job/stnlp-batch-*"},
        publish_run_ends_statement(config, account),
        {"Sid": "SageMakerHosting", "Effect": "Allow",
         "Action": ["sagemaker:CreateModel", "sagemaker:CreateEndpointConfig",
                    "sagemaker:CreateEndpoint", "sagemaker:DescribeEndpoint",
                    "sagemaker:DeleteEndpoint", "sagemaker:DeleteEndpointConfig",
                    "sagemaker:DeleteModel", "sagemaker:InvokeEndpoint", "sagemaker:AddTags"],
         "Resource": [f"arn:aws:sagemaker:{region}:{account}:{kind}/stnlp-{stack.lower()}-*"
                      for kind in ("model", "endpoint-config", "endpoint")]},
        {"Sid": "EndpointRecords", "Effect": "Allow",
         "Action": [*WRITE_OBJECT, "s3:DeleteObject"], "Resource": f"{models}/endpoints/*"},
        {"Sid": "SageMakerTuning", "Effect": "Allow",
         "Action": ["sagemaker:CreateHyperParameterTuningJob",
                    "sagemaker:DescribeHyperParameterTuningJob",
                    "sagemaker:StopHyperParameterTuningJob", "sagemaker:AddTags"],
         "Resource": f"arn:aws:sagemaker:{region}:{account}:hyper-parameter-tuning-job/tune-*"},
    ]  # fmt: skip


def sagemaker_statements(
    config: StackConfig, account: str, buckets: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The SageMaker execution role: the same data scope and parameters (the container's
    bootstrap finds the stack by its manifest), plus its logs and image pulls."""
    group = f"arn:aws:logs:{config.region}:{account}:log-group:/aws/sagemaker"
    logs = [f"{group}/{kind}" for kind in ("TrainingJobs", "ProcessingJobs", "Endpoints/*")]
    return [
        *data_statements(config.stack, buckets),
        read_parameters_statement(config, account),
        {
            "Sid": "WriteTrainingLogs",
            "Effect": "Allow",
            "Action": [
                "logs:CreateLogGroup",
                "logs:CreateLogStream",
                "logs:PutLogEvents",
                "logs:DescribeLogStreams",
            ],
            "Resource": [*logs, *(f"{name}:*" for name in logs)],
        },
        {
            "Sid": "PullImagesToken",
            "Effect": "Allow",
            "Action": "ecr:GetAuthorizationToken",
            "Resource": "*",
        },
        {
            "Sid": "PullImages",
            "Effect": "Allow",
            "Action": [
                "ecr:BatchGetImage",
                "ecr:GetDownloadUrlForLayer",
                "ecr:BatchCheckLayerAvailability",
            ],
            "Resource": "arn:aws:ecr:*:*:repository/*",
        },
        {
            "Sid": "PutTrainingMetrics",
            "Effect": "Allow",
            "Action": "cloudwatch:PutMetricData",
            "Resource": "*",
            "Condition": {"StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TrainingJobs"}},
        },
    ]


def interface_statements(
    config: StackConfig, account: str, buckets: Mapping[str, str]
) -> list[dict[str, Any]]:
    """The interface host: read-only on models, datasets and its two SSM parameters."""
    datasets, models = _bucket(buckets["datasets"]), _bucket(buckets["models"])
    parameters = [
        f"arn:aws:ssm:{config.region}:{account}:parameter{name}"
        for name in (manifest_parameter(config.stack), interface_auth_parameter(config.stack))
    ]
    return [
        *read_statements(datasets, models),
        {
            "Sid": "ReadParameters",
            "Effect": "Allow",
            "Action": "ssm:GetParameter",
            "Resource": parameters,
        },
        {
            # the chat tab's hosted source (`stnlp deploy`)
            "Sid": "InvokeChatEndpoints",
            "Effect": "Allow",
            "Action": "sagemaker:InvokeEndpoint",
            "Resource": f"arn:aws:sagemaker:{config.region}:{account}:endpoint/"
            f"stnlp-{config.stack.lower()}-*",
        },
    ]


class Identity(pulumi.ComponentResource):
    """The training role + instance profile, the SageMaker role and the interface host role."""

    def __init__(
        self,
        name: str,
        config: StackConfig,
        account_id: pulumi.Input[str],
        buckets: Mapping[str, pulumi.Output[str]],
        jobs: Sequence[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("stnlp:infra:Identity", name, None, opts)
        facts = pulumi.Output.all(account_id, pulumi.Output.all(**buckets))

        def policy(build) -> pulumi.Output[str]:
            return facts.apply(lambda f: policy_document(build(f[0], f[1])))

        training = self._role(
            config,
            "training",
            "ec2.amazonaws.com",
            policy(lambda account, names: training_statements(config, account, names, jobs)),
        )
        self.training_profile = aws.iam.InstanceProfile(
            "training-profile",
            name=iam_name(config.stack, config.region, "training"),
            role=training.name,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.sagemaker_role = self._role(
            config,
            "sagemaker",
            "sagemaker.amazonaws.com",
            policy(lambda account, names: sagemaker_statements(config, account, names)),
        )
        interface = self._role(
            config,
            "interface",
            "ec2.amazonaws.com",
            policy(lambda account, names: interface_statements(config, account, names)),
        )
        self.interface_profile = aws.iam.InstanceProfile(
            "interface-profile",
            name=iam_name(config.stack, config.region, "interface"),
            role=interface.name,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.launcher_policy = aws.iam.Policy(
            "launcher-policy",
            name=iam_name(config.stack, config.region, "launcher"),
            description=f"What `stnlp` needs on stack {config.stack}: attach it to its users",
            policy=policy(lambda account, names: launcher_statements(config, account, names)),
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs(
            {
                "launcher_policy_arn": self.launcher_policy.arn,
                "training_instance_profile_arn": self.training_profile.arn,
                "sagemaker_role_arn": self.sagemaker_role.arn,
            }
        )

    def _role(
        self, config: StackConfig, role: str, service: str, policy: pulumi.Output[str]
    ) -> aws.iam.Role:
        name = iam_name(config.stack, config.region, role)
        created = aws.iam.Role(
            f"{role}-role",
            name=name,
            assume_role_policy=assume_role_policy(service),
            tags={TAG_ROLE: role},
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws.iam.RolePolicy(
            f"{role}-policy",
            role=name,
            policy=policy,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[created]),
        )
        return created

"""AWS's rules, applied to the calls the code makes, since moto does not enforce them.

:func:`requirements` turns one recorded call (tests/recorder/sitecustomize.py) into what AWS
authorizes for it, from AWS's documentation: the IAM actions, the resource ARNs and the request
context (``s3:prefix``, ``cloudwatch:namespace``, ``aws:ResourceTag/...``,
``iam:PassedToService``, ``ec2:CreateAction``), including the actions AWS adds (a PutObject
with a tag set also needs ``s3:PutObjectTagging``; a GET or HEAD of a missing key answers 404
only with ``s3:ListBucket``, else 403; RunInstances passes the profile's role). :func:`decide`
evaluates a policy's statements the way IAM does: an explicit Deny wins, else an Allow whose
action, resource and every condition match, else an implicit deny. Wildcards ``*`` and ``?``
match in actions (case-insensitively) and resources; a condition on a key the request does not
carry fails, except for the negated operators and ``...IfExists``.

:func:`run_instances_problems` and :func:`training_job_problems` check the requests against
rules moto skips.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

ACCOUNT = "123456789012"
REGION = "us-east-1"


@dataclass(frozen=True)
class Need:
    """One authorization AWS makes for a call."""

    action: str
    resource: str
    context: Mapping[str, Any] = field(default_factory=dict)


def _listed(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _condition_holds(operator: str, key: str, wanted: Any, context: Mapping[str, Any]) -> bool:
    present = {k.lower(): v for k, v in context.items()}
    if_exists = operator.endswith("IfExists")
    base = operator.removesuffix("IfExists")
    if key.lower() not in present:
        return if_exists or base.startswith(("StringNot", "ArnNot"))
    values = [str(v) for v in _listed(present[key.lower()])]
    wanted = [str(w) for w in _listed(wanted)]
    match = {
        "StringEquals": lambda v, w: v == w,
        "StringEqualsIgnoreCase": lambda v, w: v.lower() == w.lower(),
        "StringLike": fnmatchcase,
        "ArnEquals": lambda v, w: v == w,
        "ArnLike": fnmatchcase,
        "Bool": lambda v, w: v.lower() == w.lower(),
        "StringNotEquals": lambda v, w: v == w,
        "StringNotLike": fnmatchcase,
        "ArnNotEquals": lambda v, w: v == w,
        "ArnNotLike": fnmatchcase,
    }
    if base not in match:
        raise AssertionError(f"condition operator {operator} is not modelled here")
    hit = any(match[base](v, w) for v in values for w in wanted)
    return not hit if base.startswith(("StringNot", "ArnNot")) else hit


def _statement_matches(statement: Mapping[str, Any], need: Need) -> bool:
    action = need.action.lower()
    if "NotAction" in statement:
        if any(fnmatchcase(action, a.lower()) for a in _listed(statement["NotAction"])):
            return False
    elif not any(fnmatchcase(action, a.lower()) for a in _listed(statement["Action"])):
        return False
    if "NotResource" in statement:
        if any(fnmatchcase(need.resource, r) for r in _listed(statement["NotResource"])):
            return False
    elif not any(fnmatchcase(need.resource, r) for r in _listed(statement.get("Resource"))):
        return False
    for operator, pairs in (statement.get("Condition") or {}).items():
        for key, wanted in pairs.items():
            if not _condition_holds(operator, key, wanted, need.context):
                return False
    return True


def decide(statements: Sequence[Mapping[str, Any]], need: Need) -> str:
    """``"allow"``, ``"deny"`` (explicit) or ``"implicit-deny"`` for ``need``."""
    matching = [s for s in statements if _statement_matches(s, need)]
    if any(s["Effect"] == "Deny" for s in matching):
        return "deny"
    return "allow" if any(s["Effect"] == "Allow" for s in matching) else "implicit-deny"


# -- what AWS authorizes for each call ----------------------------------------------------------


def _s3_object(params) -> str:
    return f"arn:aws:s3:::{params['Bucket']}/{params['Key']}"


def _s3_get(call) -> list[Need]:
    needs = [Need("s3:GetObject", _s3_object(call["params"]))]
    if call.get("status") == 404:  # a 404 (not a 403) needs s3:ListBucket on the bucket
        needs.append(Need("s3:ListBucket", f"arn:aws:s3:::{call['params']['Bucket']}"))
    return needs


def _s3_put(call) -> list[Need]:
    needs = [Need("s3:PutObject", _s3_object(call["params"]))]
    if call["params"].get("Tagging"):
        needs.append(Need("s3:PutObjectTagging", _s3_object(call["params"])))
    return needs


def _ec2(kind: str, ident: str) -> str:
    return f"arn:aws:ec2:{REGION}:{ACCOUNT}:{kind}/{ident}"


RULES: dict[tuple[str, str], Callable[[dict[str, Any], Any], list[Need]]] = {
    ("s3", "GetObject"): lambda c, _: _s3_get(c),
    ("s3", "HeadObject"): lambda c, _: _s3_get(c),
    ("s3", "PutObject"): lambda c, _: _s3_put(c),
    ("s3", "CreateMultipartUpload"): lambda c, _: _s3_put(c),
    ("s3", "UploadPart"): lambda c, _: [Need("s3:PutObject", _s3_object(c["params"]))],
    ("s3", "CompleteMultipartUpload"): lambda c, _: [Need("s3:PutObject",
                                                          _s3_object(c["params"]))],
    ("s3", "DeleteObject"): lambda c, _: [Need("s3:DeleteObject", _s3_object(c["params"]))],
    ("s3", "ListObjectsV2"): lambda c, _: [Need(
        "s3:ListBucket", f"arn:aws:s3:::{c['params']['Bucket']}",
        {"s3:prefix": c["params"].get("Prefix", "")})],
    ("ssm", "GetParameter"): lambda c, _: [Need(
        "ssm:GetParameter", f"arn:aws:ssm:{REGION}:{ACCOUNT}:parameter{c['params']['Name']}")],
    ("logs", "CreateLogStream"): lambda c, _: [Need("logs:CreateLogStream", (
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{c['params']['logGroupName']}:"
        f"log-stream:{c['params']['logStreamName']}"))],
    ("logs", "PutLogEvents"): lambda c, _: [Need("logs:PutLogEvents", (
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{c['params']['logGroupName']}:"
        f"log-stream:{c['params']['logStreamName']}"))],
    ("cloudwatch", "PutMetricData"): lambda c, _: [Need(
        "cloudwatch:PutMetricData", "*", {"cloudwatch:namespace": c["params"]["Namespace"]})],
    ("ec2", "DescribeInstances"): lambda c, _: [Need("ec2:DescribeInstances", "*")],
    ("ec2", "DescribeSubnets"): lambda c, _: [Need("ec2:DescribeSubnets", "*")],
    ("ec2", "DescribeInstanceTypes"): lambda c, _: [Need("ec2:DescribeInstanceTypes", "*")],
    ("ec2", "DescribeInstanceTypeOfferings"): lambda c, _: [
        Need("ec2:DescribeInstanceTypeOfferings", "*")],
    ("service-quotas", "GetServiceQuota"): lambda c, _: [
        Need("servicequotas:GetServiceQuota", "*")],
}


def _terminate(call, aws) -> list[Need]:
    needs = []
    for instance_id in call["params"]["InstanceIds"]:
        tags = aws.instance_tags(instance_id)
        context = {f"aws:ResourceTag/{k}": v for k, v in tags.items()}
        needs.append(Need("ec2:TerminateInstances", _ec2("instance", instance_id), context))
    return needs


def _run_instances(call, aws) -> list[Need]:
    params = call["params"]
    template = params["LaunchTemplate"]["LaunchTemplateId"]
    data = aws.template_data(template)
    needs = [Need("ec2:RunInstances", _ec2(kind, ident)) for kind, ident in (
        ("instance", "*"), ("volume", "*"), ("network-interface", "*"),
        ("launch-template", template), ("subnet", params.get("SubnetId", "default")),
        *(("security-group", g) for g in data.get("SecurityGroupIds", [])))]
    needs.append(Need("ec2:RunInstances", f"arn:aws:ec2:{REGION}::image/{data['ImageId']}"))
    if params.get("TagSpecifications"):
        needs += [Need("ec2:CreateTags", _ec2(kind, "*"), {"ec2:CreateAction": "RunInstances"})
                  for kind in ("instance", "volume")]
    profile = (data.get("IamInstanceProfile") or {}).get("Arn")
    if profile:
        role = aws.profile_role(profile)
        needs.append(Need("iam:PassRole", role, {"iam:PassedToService": "ec2.amazonaws.com"}))
    return needs


def _training_job(call, aws) -> list[Need]:
    params = call["params"]
    job = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{params['TrainingJobName']}"
    return [Need("sagemaker:CreateTrainingJob", job), *_passes_role(params, job)]


def _sagemaker_arn(kind: str, name: str) -> str:
    return f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:{kind}/{name.lower()}"


def _tuning_job(call, aws) -> list[Need]:
    params = call["params"]
    job = _sagemaker_arn("hyper-parameter-tuning-job", params["HyperParameterTuningJobName"])
    needs = [Need("sagemaker:CreateHyperParameterTuningJob", job),
             Need("iam:PassRole", params["TrainingJobDefinition"]["RoleArn"],
                  {"iam:PassedToService": "sagemaker.amazonaws.com"})]
    if params.get("Tags"):
        needs.append(Need("sagemaker:AddTags", job))
    return needs


def _hosting(kind: str, field: str, action: str) -> Callable[[dict[str, Any], Any], list[Need]]:
    """Create/Describe/Delete of a model, endpoint config or endpoint (Tags need AddTags;
    CreateModel passes its execution role to SageMaker)."""
    def needs(call, _aws) -> list[Need]:
        params = call["params"]
        arn = _sagemaker_arn(kind, params[field])
        found = [Need(f"sagemaker:{action}", arn)]
        if params.get("Tags"):
            found.append(Need("sagemaker:AddTags", arn))
        if params.get("ExecutionRoleArn"):
            found.append(Need("iam:PassRole", params["ExecutionRoleArn"],
                              {"iam:PassedToService": "sagemaker.amazonaws.com"}))
        if kind == "endpoint" and params.get("EndpointConfigName"):  # the config it reads
            found.append(Need(f"sagemaker:{action}",
                              _sagemaker_arn("endpoint-config", params["EndpointConfigName"])))
        return found
    return needs


for _kind, _field, _ops in (
    ("model", "ModelName", ("CreateModel", "DeleteModel", "DescribeModel")),
    ("endpoint-config", "EndpointConfigName",
     ("CreateEndpointConfig", "DeleteEndpointConfig", "DescribeEndpointConfig")),
    ("endpoint", "EndpointName", ("CreateEndpoint", "DeleteEndpoint", "DescribeEndpoint")),
):
    for _op in _ops:
        RULES[("sagemaker", _op)] = _hosting(_kind, _field, _op)
RULES[("sagemaker-runtime", "InvokeEndpoint")] = lambda c, _: [Need(
    "sagemaker:InvokeEndpoint", _sagemaker_arn("endpoint", c["params"]["EndpointName"]))]
RULES[("sagemaker", "CreateHyperParameterTuningJob")] = _tuning_job
for _op, _kind, _field in (
    ("DescribeHyperParameterTuningJob", "hyper-parameter-tuning-job",
     "HyperParameterTuningJobName"),
    ("StopHyperParameterTuningJob", "hyper-parameter-tuning-job", "HyperParameterTuningJobName"),
):
    RULES[("sagemaker", _op)] = lambda c, _, op=_op, kind=_kind, name=_field: [Need(
        f"sagemaker:{op}", _sagemaker_arn(kind, c["params"][name]))]
RULES[("ec2", "TerminateInstances")] = _terminate
RULES[("ec2", "RunInstances")] = _run_instances
RULES[("sagemaker", "CreateTrainingJob")] = _training_job
for _op in ("DescribeTrainingJob", "StopTrainingJob"):
    RULES[("sagemaker", _op)] = lambda c, _, op=_op: [Need(
        f"sagemaker:{op}",
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{c['params']['TrainingJobName']}")]


def _processing_job(call, aws) -> list[Need]:
    """CreateProcessingJob: the job, AddTags for its Tags, and passing its role to SageMaker."""
    params = call["params"]
    job = _sagemaker_arn("processing-job", params["ProcessingJobName"])
    return [Need("sagemaker:CreateProcessingJob", job), *_passes_role(params, job)]


def _passes_role(params, job: str) -> list[Need]:
    """A SageMaker job's role passed to SageMaker, and AddTags when it has Tags."""
    needs = [Need("iam:PassRole", params["RoleArn"],
                  {"iam:PassedToService": "sagemaker.amazonaws.com"})]
    return needs + ([Need("sagemaker:AddTags", job)] if params.get("Tags") else [])


RULES[("sagemaker", "CreateProcessingJob")] = _processing_job
for _op in ("DescribeProcessingJob", "StopProcessingJob"):
    RULES[("sagemaker", _op)] = lambda c, _, op=_op: [Need(
        f"sagemaker:{op}", _sagemaker_arn("processing-job", c["params"]["ProcessingJobName"]))]
RULES[("sns", "Publish")] = lambda c, _: [Need("sns:Publish", c["params"]["TopicArn"])]


def requirements(call: dict[str, Any], aws: Any) -> list[Need]:
    """What AWS authorizes for one recorded call; an unmodelled call fails the test."""
    if call["params"].get("DryRun"):
        call = {**call, "params": {k: v for k, v in call["params"].items() if k != "DryRun"}}
    rule = RULES.get((call["service"], call["operation"]))
    if rule is None:
        raise AssertionError(f"no AWS rule for {call['service']}:{call['operation']}; add one")
    return rule(call, aws)


def read_calls(path: Path) -> list[dict[str, Any]]:
    """The calls a recorder wrote (one JSON object a line)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def denials(calls: Sequence[dict[str, Any]], policies: Mapping[str, Sequence[Mapping]],
            aws: Any) -> list[str]:  # fmt: skip
    """One line per authorization a call would be refused, under its principal's policy."""
    found = []
    for call in calls:
        statements = policies[call["principal"]]
        for need in requirements(call, aws):
            verdict = decide(statements, need)
            if verdict != "allow":
                found.append(f"{call['principal']}: {call['service']}:{call['operation']} needs "
                             f"{need.action} on {need.resource} {dict(need.context)}: {verdict}")
    return found


# -- request rules moto does not apply ---------------------------------------------------------


def run_instances_problems(params: Mapping[str, Any], aws: Any, stack_spot: bool) -> list[str]:
    """What real EC2 would refuse, or the stack config forbids, in a RunInstances request."""
    problems = []
    data = aws.template_data(params["LaunchTemplate"]["LaunchTemplateId"])
    subnet = params.get("SubnetId")
    if not subnet:
        problems.append("no SubnetId: EC2 picks the default VPC, not the stack's")
    else:
        vpc = aws.subnet_vpc(subnet)
        for group in data.get("SecurityGroupIds", []):
            if aws.group_vpc(group) != vpc:
                problems.append(f"security group {group} is not in subnet {subnet}'s VPC {vpc}")
    snapshot = aws.image_snapshot_gb(data["ImageId"])
    for mapping in data.get("BlockDeviceMappings", []):
        size = (mapping.get("Ebs") or {}).get("VolumeSize")
        if size is not None and size < snapshot:
            problems.append(f"root volume {size} GB is smaller than the AMI's {snapshot} GB "
                            "snapshot")
    user_data = params.get("UserData", "")
    if len(user_data.encode()) > 16384:
        problems.append(f"user data is {len(user_data.encode())} bytes; EC2 accepts 16384")
    if params.get("InstanceMarketOptions", {}).get("MarketType") == "spot" and not stack_spot:
        problems.append("spot market options on a stack whose config says spot: false")
    return problems


def _api_limits(params: Mapping[str, Any], spec: Mapping[str, tuple[int, int, int]]) -> list[str]:
    """SageMaker's documented size limits on maps and lists of strings: for each field,
    ``(most entries, longest key, longest value)`` (botocore does not check maxima)."""
    problems = []
    for name, (entries, key_max, value_max) in spec.items():
        value = params.get(name)
        if value is None:
            continue
        items = value.items() if isinstance(value, Mapping) else [("", v) for v in value]
        if len(value) > entries:
            problems.append(f"{name} has {len(value)} entries; SageMaker accepts {entries}")
        for key, item in items:
            if len(key) > key_max or len(str(item)) > value_max:
                problems.append(f"{name} entry {key or str(item)[:40]!r} is longer than "
                                f"SageMaker accepts ({key_max}/{value_max} characters)")
    return problems


def _s3_objects(aws: Any, uri: str) -> list[str]:
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return aws.s3_keys(bucket, prefix)


def _script_mode_problems(params: Mapping[str, Any], aws: Any) -> list[str]:
    """The AWS training images' toolkit runs ``sagemaker_program`` from the tar.gz named by
    ``sagemaker_submit_directory``; without an entrypoint override, both must be right."""
    hyper = params.get("HyperParameters") or params.get("StaticHyperParameters") or {}
    algorithm = params["AlgorithmSpecification"]
    if algorithm.get("ContainerEntrypoint"):
        return []
    program, archive = hyper.get("sagemaker_program"), hyper.get("sagemaker_submit_directory")
    if not program or not archive:
        return ["no ContainerEntrypoint and no sagemaker_program/sagemaker_submit_directory: "
                "the image's toolkit has nothing to run"]
    bucket, _, key = archive.removeprefix("s3://").partition("/")
    names = aws.tar_members(bucket, key)
    if names is None:
        return [f"sagemaker_submit_directory {archive} is not a tar.gz object"]
    if program not in names:
        return [f"sagemaker_program {program} is not in {archive} ({names})"]
    return []


def training_job_problems(params: Mapping[str, Any], aws: Any, stack_spot: bool,
                          nat: bool = False) -> list[str]:  # fmt: skip
    """What SageMaker would refuse or could not run, or the stack config forbids, in a
    CreateTrainingJob (or a tuning job's TrainingJobDefinition)."""
    problems = []
    vpc = params.get("VpcConfig")
    if vpc:
        vpcs = {aws.subnet_vpc(s) for s in vpc["Subnets"]}
        vpcs |= {aws.group_vpc(g) for g in vpc["SecurityGroupIds"]}
        if len(vpcs) != 1:
            problems.append(f"VpcConfig spans VPCs {sorted(vpcs)}")
        if not nat:
            problems.append("VpcConfig on a stack without a NAT gateway: the container reaches "
                            "neither SSM nor the package index")
    stopping = params["StoppingCondition"]
    if params.get("EnableManagedSpotTraining"):
        if not stack_spot:
            problems.append("managed spot on a stack whose config says spot: false")
        if stopping.get("MaxWaitTimeInSeconds", 0) < stopping["MaxRuntimeInSeconds"]:
            problems.append("MaxWaitTimeInSeconds is below MaxRuntimeInSeconds")
    algorithm = params["AlgorithmSpecification"]
    problems += _api_limits(algorithm, {"ContainerEntrypoint": (100, 0, 256),
                                        "ContainerArguments": (100, 0, 256)})
    problems += _api_limits(params, {"HyperParameters": (100, 256, 2500),
                                     "StaticHyperParameters": (100, 256, 2500),
                                     "Environment": (100, 512, 1024)})
    for channel in params.get("InputDataConfig", []):
        uri = channel["DataSource"]["S3DataSource"]["S3Uri"]
        if not _s3_objects(aws, uri):
            problems.append(f"channel {channel['ChannelName']}: no S3 objects under {uri}")
    return problems + _script_mode_problems(params, aws)


_TUNING_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}$")
MAX_TUNED_PARAMETERS = 30  # SageMaker: at most 30 hyperparameters searched per tuning job


def _range_problems(ranges: Mapping[str, Any], static: Mapping[str, Any]) -> list[str]:
    """SageMaker's rules on ``ParameterRanges`` (AWS docs, "Define Hyperparameter Ranges")."""
    problems, names = [], []
    for kind in ("IntegerParameterRanges", "ContinuousParameterRanges"):
        for item in ranges.get(kind, []):
            names.append(item["Name"])
            if not isinstance(item["MinValue"], str) or not isinstance(item["MaxValue"], str):
                problems.append(f"{item['Name']}: MinValue/MaxValue must be strings")
                continue
            low, high = float(item["MinValue"]), float(item["MaxValue"])
            if kind == "IntegerParameterRanges" and not (low.is_integer() and high.is_integer()):
                problems.append(f"{item['Name']}: an integer range needs integer bounds")
            if low >= high:
                problems.append(f"{item['Name']}: MinValue must be below MaxValue")
            scaling = item.get("ScalingType", "Auto")
            if scaling not in ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic"):
                problems.append(f"{item['Name']}: unknown ScalingType {scaling}")
            if scaling == "Logarithmic" and low <= 0:
                problems.append(f"{item['Name']}: Logarithmic scaling needs MinValue above 0")
            if scaling == "ReverseLogarithmic" and not (low >= 0 and high < 1):
                problems.append(f"{item['Name']}: ReverseLogarithmic needs 0 <= values < 1")
    for item in ranges.get("CategoricalParameterRanges", []):
        names.append(item["Name"])
        values = item["Values"]
        if not 1 <= len(values) <= 30 or not all(isinstance(v, str) for v in values):
            problems.append(f"{item['Name']}: Values must be 1 to 30 strings")
    if len(names) > MAX_TUNED_PARAMETERS:
        problems.append(f"{len(names)} hyperparameters searched; SageMaker allows 30")
    problems += [f"{n} is both searched and static" for n in names if n in static]
    if not names:
        problems.append("ParameterRanges searches nothing")
    return problems


def tuning_job_problems(params: Mapping[str, Any], aws: Any, stack_spot: bool) -> list[str]:
    """What SageMaker would refuse in a CreateHyperParameterTuningJob request."""
    problems = []
    if not _TUNING_NAME.match(params["HyperParameterTuningJobName"]):
        problems.append("HyperParameterTuningJobName must be 1-32 letters, digits and hyphens")
    config, definition = params["HyperParameterTuningJobConfig"], params["TrainingJobDefinition"]
    if config["Strategy"] not in ("Bayesian", "Random", "Hyperband", "Grid"):
        problems.append(f"unknown Strategy {config['Strategy']}")
    limits = config["ResourceLimits"]
    if limits["MaxNumberOfTrainingJobs"] < 1 or limits["MaxParallelTrainingJobs"] < 1:
        problems.append("ResourceLimits must allow at least one training job")
    metrics = definition["AlgorithmSpecification"].get("MetricDefinitions", [])
    if len(metrics) > 40:
        problems.append(f"{len(metrics)} MetricDefinitions; SageMaker accepts 40")
    for metric in metrics:
        if not 1 <= len(metric["Regex"]) <= 500 or re.compile(metric["Regex"]).groups < 1:
            problems.append(f"metric {metric['Name']}: a regex of 1-500 characters with a "
                            "capture group for the value")
    objective = config["HyperParameterTuningJobObjective"]
    if objective["Type"] not in ("Maximize", "Minimize"):
        problems.append(f"objective Type {objective['Type']} is not Maximize or Minimize")
    if objective["MetricName"] not in {m["Name"] for m in metrics}:
        problems.append(f"objective {objective['MetricName']} has no MetricDefinition")
    problems += _range_problems(config["ParameterRanges"],
                                definition.get("StaticHyperParameters") or {})
    return problems + training_job_problems(definition, aws, stack_spot)


_SAGEMAKER_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")
_CHANNEL = re.compile(r"^[A-Za-z0-9.\-_]{1,64}$")


def _data_source_problems(where: str, source: Mapping[str, Any], aws: Any) -> list[str]:
    s3 = source["S3DataSource"]
    problems = []
    if s3["S3DataType"] == "S3Prefix" and s3["CompressionType"] == "None" \
            and not s3["S3Uri"].endswith("/"):  # fmt: skip
        problems.append(f"{where}: an uncompressed S3Prefix source must end with '/'")
    if not _s3_objects(aws, s3["S3Uri"]):
        problems.append(f"{where}: no S3 objects under {s3['S3Uri']}")
    return problems


def hosting_problems(model: Mapping[str, Any], config: Mapping[str, Any],
                     endpoint: Mapping[str, Any], aws: Any) -> list[str]:  # fmt: skip
    """What SageMaker would refuse in CreateModel, CreateEndpointConfig and CreateEndpoint
    (the API reference's patterns and limits), or could not load: an empty data source."""
    problems = [f"{name} is not a SageMaker name (63 letters, digits, hyphens)" for name in (
        model["ModelName"], config["EndpointConfigName"], endpoint["EndpointName"])
        if not _SAGEMAKER_NAME.match(name)]
    container = model["PrimaryContainer"]
    problems += _api_limits(container, {"Environment": (100, 1024, 1024)})
    problems += _data_source_problems("ModelDataSource", container["ModelDataSource"], aws)
    for extra in container.get("AdditionalModelDataSources", []):
        if not _CHANNEL.match(extra["ChannelName"]):
            problems.append(f"channel name {extra['ChannelName']!r} is not allowed")
        problems += _data_source_problems(extra["ChannelName"], extra, aws)
    for variant in config["ProductionVariants"]:
        if variant["ModelName"] != model["ModelName"]:
            problems.append(f"variant {variant['VariantName']} serves an unknown model")
        if not variant["InstanceType"].startswith("ml.") or variant["InitialInstanceCount"] < 1:
            problems.append(f"variant {variant['VariantName']}: an ml.* type and 1+ instances")
        timeout = variant.get("ContainerStartupHealthCheckTimeoutInSeconds", 60)
        if not 60 <= timeout <= 3600:
            problems.append(f"startup health check timeout {timeout} is outside 60-3600 s")
    if endpoint["EndpointConfigName"] != config["EndpointConfigName"]:
        problems.append("CreateEndpoint names another endpoint config")
    return problems


def sagemaker_metric(regex: str, log_text: str) -> float | None:
    """The value SageMaker reads for a metric from a job's log: the first capture group of the
    regex's last match (the final value is the one a tuning job ranks by)."""
    found = re.findall(regex, log_text)
    if not found:
        return None
    last = found[-1]
    return float(last[0] if isinstance(last, tuple) else last)


class MotoFacts:
    """What the rules look up in the account (on moto): templates, tags, VPCs, snapshots."""

    def __init__(self, ec2: Any, profiles: Mapping[str, str], s3: Any = None):
        self.ec2 = ec2
        self.profiles = profiles
        self.s3 = s3

    def s3_keys(self, bucket: str, prefix: str) -> list[str]:
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [o["Key"] for page in pages for o in page.get("Contents", [])]

    def tar_members(self, bucket: str, key: str) -> list[str] | None:
        """The member names of the tar.gz object at ``key``, or None when it is not one."""
        import io
        import tarfile

        try:
            body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
                return archive.getnames()
        except Exception:
            return None

    def template_data(self, template_id: str) -> dict[str, Any]:
        versions = self.ec2.describe_launch_template_versions(LaunchTemplateId=template_id)
        return versions["LaunchTemplateVersions"][0]["LaunchTemplateData"]

    def instance_tags(self, instance_id: str) -> dict[str, str]:
        reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        tags = reservations[0]["Instances"][0].get("Tags", [])
        return {t["Key"]: t["Value"] for t in tags}

    def profile_role(self, profile_arn: str) -> str:
        return self.profiles[profile_arn]

    def subnet_vpc(self, subnet: str) -> str:
        return self.ec2.describe_subnets(SubnetIds=[subnet])["Subnets"][0]["VpcId"]

    def group_vpc(self, group: str) -> str:
        return self.ec2.describe_security_groups(GroupIds=[group])["SecurityGroups"][0]["VpcId"]

    def image_snapshot_gb(self, image: str) -> int:
        found = self.ec2.describe_images(ImageIds=[image])["Images"][0]
        return max(m["Ebs"]["VolumeSize"] for m in found["BlockDeviceMappings"] if "Ebs" in m)


PROCESSING_PATH = "/opt/ml/processing/"
MAX_PROCESSING_SECONDS = 777600  # ProcessingStoppingCondition: 1 to 777,600 s (9 days)
MAX_PROCESSING_INPUTS = 10


def processing_job_problems(params: Mapping[str, Any], aws: Any) -> list[str]:
    """What SageMaker would refuse or could not run in a CreateProcessingJob (the API
    reference's required fields, patterns and limits): the name, an ``ml.*`` cluster of 1-100
    instances, the stopping condition, up to 10 inputs each downloaded under
    ``/opt/ml/processing/`` from a prefix holding objects, the environment's size, an entrypoint
    of at most 100 arguments of 256 characters."""
    problems = [f"missing required {name}" for name in (
        "ProcessingJobName", "ProcessingResources", "AppSpecification", "RoleArn")
        if name not in params]  # fmt: skip
    if problems:
        return problems
    if not _SAGEMAKER_NAME.match(params["ProcessingJobName"]):
        problems.append(f"{params['ProcessingJobName']!r} is not a SageMaker name")
    cluster = params["ProcessingResources"]["ClusterConfig"]
    if not cluster["InstanceType"].startswith("ml.") or not 1 <= cluster["InstanceCount"] <= 100:
        problems.append(f"cluster {cluster}: an ml.* type and 1 to 100 instances")
    if not 1 <= cluster["VolumeSizeInGB"] <= 16384:
        problems.append(f"VolumeSizeInGB {cluster['VolumeSizeInGB']} is outside 1-16384")
    runtime = (params.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", 86400)
    if not 1 <= runtime <= MAX_PROCESSING_SECONDS:
        problems.append(f"MaxRuntimeInSeconds {runtime} is outside 1-{MAX_PROCESSING_SECONDS}")
    app = params["AppSpecification"]
    if not app.get("ImageUri") or len(app["ImageUri"]) > 255:
        problems.append("AppSpecification.ImageUri is required (at most 255 characters)")
    problems += _api_limits(app, {"ContainerEntrypoint": (100, 0, 256),
                                  "ContainerArguments": (100, 0, 256)})
    problems += _api_limits(params, {"Environment": (100, 256, 256)})
    inputs = params.get("ProcessingInputs", [])
    if len(inputs) > MAX_PROCESSING_INPUTS:
        problems.append(f"{len(inputs)} ProcessingInputs; SageMaker accepts "
                        f"{MAX_PROCESSING_INPUTS}")
    names = [i["InputName"] for i in inputs]
    if len(set(names)) != len(names):
        problems.append(f"input names repeat: {names}")
    for item in inputs:
        s3 = item["S3Input"]
        where = f"input {item['InputName']}"
        if not s3["LocalPath"].startswith(PROCESSING_PATH) or len(s3["LocalPath"]) > 256:
            problems.append(f"{where}: LocalPath {s3['LocalPath']} must be under "
                            f"{PROCESSING_PATH}")
        if s3.get("S3CompressionType") == "Gzip" and s3["S3InputMode"] != "Pipe":
            problems.append(f"{where}: Gzip needs the Pipe input mode")
        if not re.match(r"^(https|s3)://([^/]+)/?(.*)$", s3["S3Uri"]):
            problems.append(f"{where}: S3Uri {s3['S3Uri']} is not an S3 URI")
        elif not _s3_objects(aws, s3["S3Uri"]):
            problems.append(f"{where}: no S3 objects under {s3['S3Uri']}")
    return problems

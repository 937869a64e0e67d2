"""Names and tags shared by the Pulumi program, the policy rules and the runtime.

Everything a launcher or an instance must find by stack name is derived here, in one place.
"""

from __future__ import annotations

PROJECT = "stranger-things-nlp"
BUCKET_KINDS = ("datasets", "models", "results")

# Tag keys put on every resource (through the provider) and on launched instances and volumes.
TAG_STACK = "stnlp:stack"
TAG_JOB = "stnlp:job"
TAG_ROLE = "stnlp:role"
TAG_BUCKET = "stnlp:bucket"
TAG_RUN = "stnlp:run-id"
TAG_MANAGED_BY = "managed-by"

# S3 object tag on run logs and checkpoints; the stack's lifecycle rules expire objects by it
# (values ``logs`` and ``checkpoints``), since S3 rules match prefixes only.
EXPIRE_TAG = "stnlp-expire"

# Custom metric the training user data emits every minute; the overrun alarm watches it.
METRIC_NAMESPACE = "STNLP"
METRIC_ELAPSED = "ElapsedMinutes"

# Prefix in the models bucket holding what a launch ships to its instances, content-addressed:
# ``packages/sha256/<digest>/<file name>`` (the project's wheel, plugin wheels, the lock).
PACKAGES_PREFIX = "packages/"
# Prefix in the models bucket caching hub models once per stack: ``hub/<owner>--<name>/...``.
HUB_PREFIX = "hub/"


def package_key(digest: str, filename: str) -> str:
    """Where a shipped file lives in the models bucket, by the sha256 of its content."""
    return f"{PACKAGES_PREFIX}sha256/{digest}/{filename}"


def bucket_name(stack: str, kind: str, account_id: str) -> str:
    """Globally unique bucket name: ``stnlp-<stack>-<kind>-<account id>``."""
    return f"stnlp-{stack}-{kind}-{account_id}"


def manifest_parameter(stack: str) -> str:
    """The SSM parameter holding the stack manifest (docs/architecture.md)."""
    return f"/stnlp/{stack}/manifest"


def interface_auth_parameter(stack: str) -> str:
    """The SSM SecureString (``user:password``) the interface host reads for `stnlp serve`."""
    return f"/stnlp/{stack}/interface-auth"


def log_group_name(stack: str, job: str) -> str:
    """CloudWatch log group of one training job."""
    return f"/stnlp/{stack}/{job}"


def launch_template_name(stack: str, job: str) -> str:
    """EC2 launch template of one training job."""
    return f"stnlp-{stack}-{job}"


def iam_name(stack: str, region: str, role: str) -> str:
    """IAM role / instance profile name; IAM is global, so the region is part of it."""
    return f"stnlp-{stack}-{region}-{role}"


def ec2_instance_type(instance_type: str) -> str:
    """The EC2 type behind a job's instance type (``ml.g5.xlarge`` -> ``g5.xlarge``)."""
    return instance_type.removeprefix("ml.")


def ml_instance_type(instance_type: str) -> str:
    """SageMaker's name of an instance type (``g5.xlarge`` -> ``ml.g5.xlarge``)."""
    return instance_type if instance_type.startswith("ml.") else f"ml.{instance_type}"

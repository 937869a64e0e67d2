"""Storage: the datasets, models and results buckets of one stack, locked down.

Each bucket gets SSE (AES256, no KMS request charges), versioning, all four public-access-block
flags, bucket-owner-enforced ownership, a policy denying non-TLS access and lifecycle rules.
S3 lifecycle filters match prefixes, not infixes, so run logs and checkpoints (stored under
``<stack>/runs/<run_id>/``) expire by object tag: the runtime tags them ``stnlp-expire=logs`` or
``stnlp-expire=checkpoints`` when it uploads them. Current model versions never expire.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_aws as aws

from stnlp.common.names import BUCKET_KINDS, EXPIRE_TAG, TAG_BUCKET, bucket_name
from stnlp.common.stackconfig import StackConfig
from stnlp.infra.identity import policy_document

NONCURRENT_STORAGE_CLASS = "STANDARD_IA"
ABORT_MULTIPART_DAYS = 7


def tls_only_policy(bucket_arn: str) -> str:
    """A bucket policy denying every request that does not use TLS."""
    return policy_document(
        [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [bucket_arn, f"{bucket_arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ]
    )


def lifecycle_rules(kind: str, config: StackConfig) -> list[dict[str, Any]]:
    """Lifecycle rules of one bucket kind (``datasets``, ``models`` or ``results``)."""
    rules: list[dict[str, Any]] = [
        {
            "id": "noncurrent-to-infrequent-access",
            "status": "Enabled",
            "filter": {"prefix": ""},
            "noncurrent_version_transitions": [
                {
                    "noncurrent_days": config.noncurrent_transition_days,
                    "storage_class": NONCURRENT_STORAGE_CLASS,
                }
            ],
            "abort_incomplete_multipart_upload": {"days_after_initiation": ABORT_MULTIPART_DAYS},
        }
    ]
    if kind == "results":
        for what, days in (
            ("logs", config.log_expiration_days),
            ("checkpoints", config.checkpoint_expiration_days),
        ):
            rules.append(
                {
                    "id": f"expire-{what}",
                    "status": "Enabled",
                    "filter": {"tag": {"key": EXPIRE_TAG, "value": what}},
                    "expiration": {"days": days},
                    "noncurrent_version_expiration": {"noncurrent_days": days},
                }
            )
    return rules


class Storage(pulumi.ComponentResource):
    """The three buckets of a stack; ``names`` maps kind -> bucket name."""

    def __init__(
        self,
        name: str,
        config: StackConfig,
        account_id: pulumi.Input[str],
        opts: pulumi.ResourceOptions | None = None,
    ):
        super().__init__("stnlp:infra:Storage", name, None, opts)
        self.names: dict[str, pulumi.Output[str]] = {}
        for kind in BUCKET_KINDS:
            self.names[kind] = self._bucket(kind, config, account_id).bucket
        self.register_outputs({"buckets": self.names})

    def _bucket(self, kind: str, config: StackConfig, account_id: pulumi.Input[str]):
        child = pulumi.ResourceOptions(parent=self)
        bucket = aws.s3.Bucket(
            kind,
            bucket=pulumi.Output.from_input(account_id).apply(
                lambda account: bucket_name(config.stack, kind, account)
            ),
            tags={TAG_BUCKET: kind},
            opts=child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{kind}-encryption",
            bucket=bucket.id,
            rules=[{"apply_server_side_encryption_by_default": {"sse_algorithm": "AES256"}}],
            opts=child,
        )
        versioning = aws.s3.BucketVersioning(
            f"{kind}-versioning",
            bucket=bucket.id,
            versioning_configuration={"status": "Enabled"},
            opts=child,
        )
        block = aws.s3.BucketPublicAccessBlock(
            f"{kind}-public-access-block",
            bucket=bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
            opts=child,
        )
        aws.s3.BucketOwnershipControls(
            f"{kind}-ownership",
            bucket=bucket.id,
            rule={"object_ownership": "BucketOwnerEnforced"},
            opts=child,
        )
        aws.s3.BucketPolicy(
            f"{kind}-tls-only",
            bucket=bucket.id,
            policy=bucket.arn.apply(tls_only_policy),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[block]),
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{kind}-lifecycle",
            bucket=bucket.id,
            rules=lifecycle_rules(kind, config),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[versioning]),
        )
        return bucket
